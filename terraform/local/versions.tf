terraform {
  # Built-in terraform_data only, so `terraform init` downloads nothing. 1.9 for validations
  # that refer to other variables.
  required_version = ">= 1.9.0"
}
