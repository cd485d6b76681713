//! A cluster's specification, validated field by field.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::options::{self, NAME_MAX, NODE_MAX, Target};
use crate::{domain::Invalid, error::FieldErrors};

/// An IPv4 network in CIDR notation, with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    network: u32,
    prefix: u8,
}

impl Ipv4Net {
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
    }

    pub fn prefix(self) -> u8 {
        self.prefix
    }

    fn last(self) -> u32 {
        self.network | !Self::mask(self.prefix)
    }

    pub fn contains(self, other: Ipv4Net) -> bool {
        other.prefix >= self.prefix && (other.network & Self::mask(self.prefix)) == self.network
    }

    pub fn overlaps(self, other: Ipv4Net) -> bool {
        self.network <= other.last() && other.network <= self.last()
    }

    /// Inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16.
    pub fn is_private(self) -> bool {
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
            .iter()
            .filter_map(|range| range.parse::<Ipv4Net>().ok())
            .any(|range| range.contains(self))
    }
}

impl FromStr for Ipv4Net {
    type Err = Invalid;

    fn from_str(text: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::new("invalid", format!("`{text}` is not a CIDR block like 10.0.0.0/16."));
        let (address, prefix) = text.trim().split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
        let bits = u32::from(address);
        let network = bits & Self::mask(prefix);
        if network != bits {
            return Err(Invalid::new(
                "host_bits",
                format!("`{text}` has host bits set; the network is {}/{prefix}.", Ipv4Addr::from(network)),
            ));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

pub use fleetplane_api::{SpecInput, StateBackend};

/// A validated cluster specification: what the Terraform variables are made of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub name_prefix: String,
    pub name_suffix: String,
    pub region: String,
    pub kubernetes_version: String,
    pub vpc_cidr: String,
    pub public_subnets: Vec<String>,
    pub private_subnets: Vec<String>,
    pub node_instance_type: String,
    pub node_min: u32,
    pub node_max: u32,
    pub node_desired: u32,
    pub state_backend: StateBackend,
}

impl ClusterSpec {
    /// The cluster's name: prefix and suffix joined with a dash.
    pub fn name(&self) -> String {
        format!("{}-{}", self.name_prefix, self.name_suffix)
    }
}

fn required<'a>(errors: &mut FieldErrors, field: &str, value: &'a Option<String>, what: &str) -> Option<&'a str> {
    let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty());
    if value.is_none() {
        errors.add(field, Invalid::new("required", format!("Choose {what}.")));
    }
    value
}

/// A DNS-1123 label fragment: lower-case letters, digits and dashes.
fn label_chars(text: &str) -> bool {
    text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_name(errors: &mut FieldErrors, prefix: Option<&str>, suffix: Option<&str>) -> Option<(String, String)> {
    let prefix_ok = prefix.is_some_and(|p| {
        let ok = label_chars(p) && p.starts_with(|c: char| c.is_ascii_lowercase());
        if !ok {
            errors.add(
                "name_prefix",
                Invalid::new("invalid", "Use lower-case letters, digits and dashes, starting with a letter."),
            );
        }
        ok
    });
    let suffix_ok = suffix.is_some_and(|s| {
        let ok = label_chars(s) && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !ok {
            errors.add(
                "name_suffix",
                Invalid::new("invalid", "Use lower-case letters, digits and dashes, ending with a letter or digit."),
            );
        }
        ok
    });
    let (prefix, suffix) = (prefix?, suffix?);
    if !(prefix_ok && suffix_ok) {
        return None;
    }
    let length = prefix.len() + 1 + suffix.len();
    if length > NAME_MAX {
        errors.add(
            "name_suffix",
            Invalid::new(
                "too_long",
                format!("The name `{prefix}-{suffix}` has {length} characters; the limit is {NAME_MAX}."),
            ),
        );
        return None;
    }
    Some((prefix.to_owned(), suffix.to_owned()))
}

fn check_networks(
    errors: &mut FieldErrors,
    vpc: Option<&str>,
    public: Option<&[String]>,
    private: Option<&[String]>,
) -> Option<(Ipv4Net, Vec<Ipv4Net>, Vec<Ipv4Net>)> {
    let vpc = vpc.and_then(|text| match text.parse::<Ipv4Net>() {
        Ok(net) if !(16..=24).contains(&net.prefix()) => {
            errors.add("vpc_cidr", Invalid::new("size", "Use a network from /16 to /24."));
            None
        }
        Ok(net) if !net.is_private() => {
            errors.add(
                "vpc_cidr",
                Invalid::new("not_private", "Use a private range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16."),
            );
            None
        }
        Ok(net) => Some(net),
        Err(invalid) => {
            errors.add("vpc_cidr", invalid);
            None
        }
    });
    let mut all: Vec<(String, Ipv4Net)> = Vec::new();
    let mut parse_list = |name: &str, list: Option<&[String]>| -> Option<Vec<Ipv4Net>> {
        let list = list.unwrap_or_default();
        if list.is_empty() || list.len() > 6 {
            errors.add(name, Invalid::new("count", "Give 1 to 6 subnets."));
            return None;
        }
        let mut nets = Vec::new();
        let mut ok = true;
        for (index, text) in list.iter().enumerate() {
            let field = format!("{name}.{index}");
            match text.parse::<Ipv4Net>() {
                Ok(net) if net.prefix() > 28 => {
                    errors.add(&field, Invalid::new("size", "A subnet needs at least a /28."));
                    ok = false;
                }
                Ok(net) => {
                    if let Some(vpc) = vpc
                        && !vpc.contains(net)
                    {
                        errors.add(&field, Invalid::new("outside_vpc", format!("{net} is not inside the VPC {vpc}.")));
                        ok = false;
                    } else if let Some((other, _)) = all.iter().find(|(_, existing)| existing.overlaps(net)) {
                        errors.add(&field, Invalid::new("overlap", format!("{net} overlaps {other}.")));
                        ok = false;
                    }
                    all.push((field, net));
                    nets.push(net);
                }
                Err(invalid) => {
                    errors.add(&field, invalid);
                    ok = false;
                }
            }
        }
        ok.then_some(nets)
    };
    let public = parse_list("public_subnets", public);
    let private = parse_list("private_subnets", private);
    Some((vpc?, public?, private?))
}

fn check_nodes(
    errors: &mut FieldErrors,
    min: Option<i64>,
    max: Option<i64>,
    desired: Option<i64>,
) -> Option<(u32, u32, u32)> {
    let limit = i64::from(NODE_MAX);
    let mut count = |field: &str, value: Option<i64>, low: i64| -> Option<u32> {
        match value {
            None => {
                errors.add(field, Invalid::new("required", "Enter a number of nodes."));
                None
            }
            Some(n) if !(low..=limit).contains(&n) => {
                errors.add(field, Invalid::new("range", format!("Use {low} to {limit} nodes.")));
                None
            }
            Some(n) => u32::try_from(n).ok(),
        }
    };
    let min = count("node_min", min, 0);
    let max = count("node_max", max, 1);
    let desired = match desired {
        None => min,
        some => count("node_desired", some, 0),
    };
    let (min, max, desired) = (min?, max?, desired?);
    if min > max {
        errors.add(
            "node_min",
            Invalid::new("min_above_max", format!("The minimum ({min}) is above the maximum ({max}).")),
        );
        return None;
    }
    if !(min..=max).contains(&desired) {
        errors.add("node_desired", Invalid::new("range", format!("Use a number from {min} to {max}.")));
        return None;
    }
    Some((min, max, desired))
}

fn check_backend(
    errors: &mut FieldErrors,
    backend: Option<&StateBackend>,
    provider: Option<fleetplane_api::Provider>,
) -> Option<StateBackend> {
    let backend = backend.cloned().unwrap_or_default();
    if let Some(wanted) = backend.provider() {
        if provider != Some(wanted) {
            errors.add(
                "state_backend",
                Invalid::new(
                    "provider",
                    "A bucket backend must be in the cluster's own cloud; use Fleetplane's backend otherwise.",
                ),
            );
            return None;
        }
        let (StateBackend::S3 { bucket, .. } | StateBackend::Gcs { bucket, .. } | StateBackend::Azurerm { bucket, .. }) =
            &backend
        else {
            return Some(backend);
        };
        let valid = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_');
        if !valid {
            errors
                .add("state_backend.bucket", Invalid::new("invalid", "Pick a bucket (3 to 63 lower-case characters)."));
            return None;
        }
    }
    Some(backend)
}

/// Validates `input` for `target` (whose cloud is `provider`), reporting every problem.
pub fn validate(input: &SpecInput, target: &Target, errors: &mut FieldErrors) -> Option<ClusterSpec> {
    let prefix = required(errors, "name_prefix", &input.name_prefix, "a name prefix");
    let suffix = required(errors, "name_suffix", &input.name_suffix, "a name suffix");
    let name = check_name(errors, prefix, suffix);

    let region = required(errors, "region", &input.region, "a region").and_then(|region| {
        let known = target.regions.contains(&region);
        if !known {
            errors.add("region", Invalid::new("unknown", format!("`{region}` is not a {} region.", target.label)));
        }
        known.then(|| region.to_owned())
    });
    let version =
        required(errors, "kubernetes_version", &input.kubernetes_version, "a Kubernetes version").and_then(|v| {
            let supported = options::KUBERNETES_VERSIONS.contains(&v);
            if !supported {
                errors.add(
                    "kubernetes_version",
                    Invalid::new(
                        "unsupported",
                        format!(
                            "Kubernetes {v} is not supported; choose one of {}.",
                            options::KUBERNETES_VERSIONS.join(", ")
                        ),
                    ),
                );
            }
            supported.then(|| v.to_owned())
        });
    let vpc = required(errors, "vpc_cidr", &input.vpc_cidr, "a VPC network");
    let networks = check_networks(errors, vpc, input.public_subnets.as_deref(), input.private_subnets.as_deref());
    let instance_type =
        required(errors, "node_instance_type", &input.node_instance_type, "a node size").and_then(|t| {
            let known = target.instance_types.contains(&t);
            if !known {
                errors.add(
                    "node_instance_type",
                    Invalid::new("unknown", format!("`{t}` is not a {} node size here.", target.label)),
                );
            }
            known.then(|| t.to_owned())
        });
    let nodes = check_nodes(errors, input.node_min, input.node_max, input.node_desired);
    let backend = check_backend(errors, input.state_backend.as_ref(), target.provider);

    let (
        (name_prefix, name_suffix),
        region,
        kubernetes_version,
        (vpc, public, private),
        node_instance_type,
        (node_min, node_max, node_desired),
        state_backend,
    ) = (name?, region?, version?, networks?, instance_type?, nodes?, backend?);
    Some(ClusterSpec {
        name_prefix,
        name_suffix,
        region,
        kubernetes_version,
        vpc_cidr: vpc.to_string(),
        public_subnets: public.iter().map(Ipv4Net::to_string).collect(),
        private_subnets: private.iter().map(Ipv4Net::to_string).collect(),
        node_instance_type,
        node_min,
        node_max,
        node_desired,
        state_backend,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect(text)
    }

    #[test]
    fn cidrs_parse_contain_and_overlap() {
        assert_eq!(net("10.0.0.0/16").to_string(), "10.0.0.0/16");
        assert!(net("10.0.0.0/16").contains(net("10.0.16.0/20")));
        assert!(!net("10.0.0.0/16").contains(net("10.1.0.0/20")));
        assert!(!net("10.0.0.0/20").contains(net("10.0.0.0/16")));
        assert!(net("10.0.0.0/20").overlaps(net("10.0.8.0/24")));
        assert!(!net("10.0.0.0/20").overlaps(net("10.0.16.0/20")));
        assert_eq!("10.0.0.1/16".parse::<Ipv4Net>().unwrap_err().code, "host_bits");
        for bad in ["10.0.0.0", "10.0.0/16", "10.0.0.0/33", "300.0.0.0/8", "banana"] {
            assert_eq!(bad.parse::<Ipv4Net>().unwrap_err().code, "invalid", "{bad}");
        }
        assert!(net("172.20.0.0/16").is_private() && !net("8.8.0.0/16").is_private());
    }

    fn input() -> SpecInput {
        SpecInput {
            name_prefix: Some("shop".into()),
            name_suffix: Some("prod-eu".into()),
            region: Some("local".into()),
            kubernetes_version: Some("1.33".into()),
            vpc_cidr: Some("10.0.0.0/16".into()),
            public_subnets: Some(vec!["10.0.0.0/20".into(), "10.0.16.0/20".into()]),
            private_subnets: Some(vec!["10.0.64.0/19".into()]),
            node_instance_type: Some("local.small".into()),
            node_min: Some(1),
            node_max: Some(3),
            node_desired: None,
            state_backend: None,
        }
    }

    fn fields(input: &SpecInput) -> Vec<String> {
        let mut errors = FieldErrors::new();
        let target = options::target("local").expect("local");
        let spec = validate(input, target, &mut errors);
        match errors.finish() {
            Ok(()) => {
                assert!(spec.is_some());
                vec![]
            }
            Err(crate::error::AppError::Client { errors, .. }) => errors.into_iter().map(|e| e.field).collect(),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_spec_validates_with_defaults_filled() {
        let mut errors = FieldErrors::new();
        let spec = validate(&input(), options::target("local").expect("local"), &mut errors).expect("valid");
        assert_eq!(spec.name(), "shop-prod-eu");
        assert_eq!(spec.node_desired, 1);
        assert_eq!(spec.state_backend, StateBackend::Fleetplane);
    }

    /// A change to a good input, and the fields it must be rejected on.
    type Case = (fn(&mut SpecInput), Vec<&'static str>);

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<Case> = vec![
            (|i| i.public_subnets = Some(vec!["10.0.0.0/20".into(), "10.0.8.0/24".into()]), vec!["public_subnets.1"]),
            (|i| i.private_subnets = Some(vec!["10.0.0.0/24".into()]), vec!["private_subnets.0"]),
            (|i| i.private_subnets = Some(vec!["10.9.0.0/24".into()]), vec!["private_subnets.0"]),
            (|i| i.public_subnets = Some(vec!["10.0.0/24".into()]), vec!["public_subnets.0"]),
            (|i| i.vpc_cidr = Some("10.0.0.0/8".into()), vec!["vpc_cidr"]),
            (|i| i.region = Some("mars-1".into()), vec!["region"]),
            (|i| i.kubernetes_version = Some("1.20".into()), vec!["kubernetes_version"]),
            (|i| i.name_suffix = Some("x".repeat(40)), vec!["name_suffix"]),
            (|i| i.name_prefix = Some("Shop".into()), vec!["name_prefix"]),
            (|i| i.name_suffix = Some("eu-".into()), vec!["name_suffix"]),
            (|i| (i.node_min, i.node_max) = (Some(5), Some(2)), vec!["node_min"]),
            (|i| i.node_max = Some(1000), vec!["node_max"]),
            (|i| i.node_desired = Some(9), vec!["node_desired"]),
            (|i| i.node_instance_type = Some("m6i.large".into()), vec!["node_instance_type"]),
            (|i| i.state_backend = Some(StateBackend::S3 { bucket: "b-b-b".into(), key: None }), vec!["state_backend"]),
            (|i| i.public_subnets = Some(vec![]), vec!["public_subnets"]),
        ];
        for (change, expected) in cases {
            let mut case = input();
            change(&mut case);
            assert_eq!(fields(&case), expected);
        }
        assert_eq!(
            fields(&SpecInput::default()),
            [
                "name_prefix",
                "name_suffix",
                "region",
                "kubernetes_version",
                "vpc_cidr",
                "public_subnets",
                "private_subnets",
                "node_instance_type",
                "node_min",
                "node_max"
            ],
            "everything missing is reported at once"
        );
    }
}
