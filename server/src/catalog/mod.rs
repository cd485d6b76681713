//! The deployment catalog: the services Fleetplane deploys onto clusters, each a Helm chart at
//! pinned versions with a JSON Schema of the values a deployment may set.
//!
//! The entries are data: `entries.rs` lists them, and each one's values schema is a file under
//! `schemas/`, in the chart's own keys, so that the values a deployment was given
//! (with their defaults) are exactly what `helm --values` takes. [`schema`] is the validator.
//!
//! The deployments API (`POST /orgs/{org}/clusters/{id}/deployments`, with or without
//! `?dry_run=true`) checks its `{service, version, values}` with [`validate`], which records
//! every problem in the request's [`FieldErrors`] the way cluster specs are checked; it then
//! checks the cluster's target with [`Entry::check_target`], seals
//! [`ValidatedValues::secrets`], stores [`ValidatedValues::without_secrets`] and hands
//! [`ValidatedValues::helm_values`] to the run alone. The API never returns secrets, so an
//! upgrade that changes other values must put the stored secrets back into the values before
//! validating them again.

mod entries;
pub mod schema;

use std::sync::LazyLock;

use fleetplane_api as api;
use serde_json::Value;

use crate::{domain::Invalid, error::FieldErrors};
pub use schema::{SchemaError, ValidatedValues, ValuesSchema};

/// What `entries.rs` says about a service.
#[derive(Debug)]
pub struct Info {
    /// The id deployments name it by.
    pub service: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub chart: Chart,
    /// Newest first; the first is what a deployment gets when it names no version.
    pub versions: &'static [ChartVersion],
    pub outputs: &'static [Output],
    pub local: Local,
    /// The values schema, as written under `schemas/`.
    schema: &'static str,
}

#[derive(Debug)]
pub struct Chart {
    pub name: &'static str,
    pub source: ChartSource,
}

#[derive(Debug)]
pub enum ChartSource {
    /// A chart in this repository, at this directory.
    Workspace { path: &'static str },
    /// A Helm chart repository (`helm repo add`).
    Repository { url: &'static str },
    /// A directory of a git repository at a pinned commit: the chart is published nowhere else.
    Git { url: &'static str, commit: &'static str, path: &'static str },
}

#[derive(Debug, PartialEq, Eq)]
pub struct ChartVersion {
    pub version: &'static str,
    pub app_version: &'static str,
}

/// Something a deployment reports once it is up.
#[derive(Debug)]
pub struct Output {
    pub name: &'static str,
    pub description: &'static str,
    /// Sealed when stored, like secret values.
    pub secret: bool,
    pub source: OutputSource,
}

/// Where an output's value comes from. Names may hold `{release}`, the Helm release's name, and
/// `{fullname}`, the name charts give their objects: the release's name, followed by `-<chart>`
/// unless it already contains the chart's name.
#[derive(Debug)]
pub enum OutputSource {
    /// The address of one of the release's Services, on this port.
    Service { name: &'static str, port: u16 },
    /// A value the deployment was given, at this JSON pointer into its values.
    Value { pointer: &'static str },
    /// A key of a Secret the chart creates.
    Secret { name: &'static str, key: &'static str },
    /// A token Fleetplane makes for the service's own API when the deployment is created, keeps
    /// sealed and never returns; the service is given only its SHA-256 (hex), as the variable
    /// `env` on the local target and the chart value at `chart_value` on a cluster.
    ManagedToken { prefix: &'static str, env: &'static str, chart_value: &'static str },
}

/// Whether an entry can run on the `local` target, whose runtime is this machine's Docker
/// engine rather than a Kubernetes API server.
#[derive(Debug)]
pub enum Local {
    Supported,
    /// Why not, in a sentence to show as it is.
    Unsupported {
        reason: &'static str,
    },
}

/// A catalog entry: what `entries.rs` says, with its values schema compiled.
#[derive(Debug)]
pub struct Entry {
    pub info: &'static Info,
    pub values: ValuesSchema,
}

impl Info {
    /// The token Fleetplane holds for this service's API, if it has one.
    pub fn managed_token(&self) -> Option<&'static OutputSource> {
        self.outputs.iter().map(|o| &o.source).find(|s| matches!(s, OutputSource::ManagedToken { .. }))
    }
}

impl Entry {
    fn load(info: &'static Info) -> Result<Self, SchemaError> {
        Ok(Self { info, values: ValuesSchema::load(info.schema)? })
    }

    /// The chart version `version` names (none: the newest pinned one), or why it cannot be
    /// deployed.
    pub fn version(&self, version: Option<&str>) -> Result<&'static ChartVersion, Invalid> {
        let versions = self.info.versions;
        let Some(wanted) = version else {
            return versions.first().ok_or_else(|| Invalid::new("unsupported", "This service has no version."));
        };
        versions.iter().find(|known| known.version == wanted).ok_or_else(|| {
            let list = versions.iter().map(|known| known.version).collect::<Vec<_>>().join(", ");
            Invalid::new("unsupported", format!("{} {wanted} is not offered; choose {list}.", self.info.title))
        })
    }

    /// Checks a deployment of this entry, recording every problem in `errors`: `version` (none:
    /// the newest), and `values` (none: every default).
    pub fn validate(
        &'static self,
        version: Option<&str>,
        values: Option<&Value>,
        errors: &mut FieldErrors,
    ) -> Option<Validated> {
        let version = errors.check("version", self.version(version));
        let values = self.values.validate(values, errors);
        Some(Validated { entry: self, version: version?, values: values? })
    }

    /// Whether the entry can run on clusters of `target` (a target id, as clusters have). Only
    /// the `local` target limits what runs: to what this machine's Docker engine can run.
    pub fn check_target(&self, target: &str) -> Result<(), Invalid> {
        match self.info.local {
            Local::Unsupported { reason } if target == "local" => Err(Invalid::new("local_unsupported", reason)),
            _ => Ok(()),
        }
    }

    /// The entry as `GET /api/v1/catalog` shows it.
    pub fn view(&self) -> api::CatalogEntry {
        let info = self.info;
        api::CatalogEntry {
            service: info.service.to_owned(),
            title: info.title.to_owned(),
            description: info.description.to_owned(),
            chart: api::HelmChart {
                name: info.chart.name.to_owned(),
                source: match info.chart.source {
                    ChartSource::Workspace { path } => api::ChartSource::Workspace { path: path.to_owned() },
                    ChartSource::Repository { url } => api::ChartSource::Repository { url: url.to_owned() },
                    ChartSource::Git { url, commit, path } => {
                        api::ChartSource::Git { url: url.to_owned(), commit: commit.to_owned(), path: path.to_owned() }
                    }
                },
            },
            versions: info
                .versions
                .iter()
                .map(|v| api::ChartVersion { version: v.version.to_owned(), app_version: v.app_version.to_owned() })
                .collect(),
            values_schema: self.values.json().to_owned(),
            defaults: self.values.defaults().clone(),
            secrets: self.values.secrets().to_vec(),
            outputs: info
                .outputs
                .iter()
                .map(|output| api::CatalogOutput {
                    name: output.name.to_owned(),
                    description: output.description.to_owned(),
                    secret: output.secret,
                })
                .collect(),
            local: match info.local {
                Local::Supported => api::LocalSupport { supported: true, reason: None },
                Local::Unsupported { reason } => {
                    api::LocalSupport { supported: false, reason: Some(reason.to_owned()) }
                }
            },
        }
    }
}

/// A deployment's service, chart version and values, all valid.
#[derive(Debug)]
pub struct Validated {
    pub entry: &'static Entry,
    pub version: &'static ChartVersion,
    pub values: ValidatedValues,
}

/// Every entry, compiled once. The schemas are part of the build and the catalog's tests load
/// each one, so a schema that does not load is a bug that cannot reach a release.
static CATALOG: LazyLock<Vec<Entry>> = LazyLock::new(|| {
    entries::ENTRIES
        .iter()
        .map(|info| Entry::load(info).unwrap_or_else(|e| panic!("the catalog entry `{}`: {e}", info.service)))
        .collect()
});

/// The catalog, in the order it is shown.
pub fn entries() -> &'static [Entry] {
    &CATALOG
}

/// The entry deployments call `service`.
pub fn entry(service: &str) -> Option<&'static Entry> {
    entries().iter().find(|entry| entry.info.service == service)
}

/// Checks what a deployment asks for, recording every problem in `errors` under `service`,
/// `version` and `values.<path>`: the service must be in the catalog, the version one it pins
/// (none: the newest), the values valid for its schema (none: every default).
pub fn validate(
    service: Option<&str>,
    version: Option<&str>,
    values: Option<&Value>,
    errors: &mut FieldErrors,
) -> Option<Validated> {
    let Some(service) = service.map(str::trim).filter(|s| !s.is_empty()) else {
        errors.add("service", Invalid::new("required", "Choose a service from the catalog."));
        return None;
    };
    let Some(entry) = entry(service) else {
        let known = entries().iter().map(|e| e.info.service).collect::<Vec<_>>().join(", ");
        errors.add("service", Invalid::new("unknown", format!("`{service}` is not in the catalog; choose {known}.")));
        return None;
    };
    entry.validate(version, values, errors)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::error::AppError;

    /// What `validate` makes of a request: `Ok` with what it validated, or each problem as
    /// `(field, code)`.
    fn outcome(
        service: Option<&str>,
        version: Option<&str>,
        values: Option<Value>,
    ) -> Result<Validated, Vec<(String, String)>> {
        let mut errors = FieldErrors::new();
        let validated = validate(service, version, values.as_ref(), &mut errors);
        match errors.finish() {
            Ok(()) => Ok(validated.expect("no problem, so a result")),
            Err(AppError::Client { errors, .. }) => {
                assert!(validated.is_none(), "problems and a result");
                Err(errors.into_iter().map(|e| (e.field, e.code)).collect())
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    fn valid(service: &str, values: Value) -> Validated {
        outcome(Some(service), None, Some(values.clone()))
            .unwrap_or_else(|problems| panic!("{service} {values}: {problems:?}"))
    }

    fn problems(service: &str, values: Value) -> Vec<(String, String)> {
        outcome(Some(service), None, Some(values)).map(|v| v.values).expect_err("invalid values")
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(field, code)| ((*field).to_owned(), (*code).to_owned())).collect()
    }

    const PASSWORD: &str = "correct horse battery";
    const SECRET_KEY: &str = "k7rV0dNQ2v8yG3pX6cT1mZ4bW9sL5hJ0eA2uF8qR";

    #[test]
    fn every_entry_loads_with_unique_ids_and_pinned_versions() {
        let services: Vec<&str> = entries().iter().map(|e| e.info.service).collect();
        assert_eq!(services, ["fleet-telemetry", "jupyterhub", "mlflow", "airflow", "superset", "code-server"]);
        for entry in entries() {
            let info = entry.info;
            assert!(info.service.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{}", info.service);
            let versions: BTreeSet<&str> = info.versions.iter().map(|v| v.version).collect();
            assert!(!versions.is_empty() && versions.len() == info.versions.len(), "{}", info.service);
            for version in info.versions {
                let numbers: Vec<&str> = version.version.split('.').collect();
                let pinned = numbers.len() == 3 && numbers.iter().all(|n| n.parse::<u32>().is_ok());
                assert!(pinned, "{} {} is not an exact version", info.service, version.version);
            }
            assert!(serde_json::from_str::<Value>(entry.values.json().get()).is_ok());
        }
        assert!(entry("airflow").is_some() && entry("Airflow").is_none() && entry("nope").is_none());
    }

    #[test]
    fn naming_only_the_service_gets_its_newest_version_and_the_defaults() {
        let validated = outcome(Some("fleet-telemetry"), None, None).expect("defaults are valid");
        assert_eq!(validated.version.version, "0.1.0");
        assert_eq!(
            *validated.values.helm_values(),
            json!({
                "replicaCount": 1,
                "clickhouse": {},
                "broker": { "external": {} },
                "postgresql": {},
                "masterKeys": {},
                "resources": { "requests": { "cpu": "100m", "memory": "256Mi" }, "limits": { "cpu": "1", "memory": "1Gi" } },
            })
        );
        assert_eq!(
            Value::Object(entry("fleet-telemetry").expect("entry").values.defaults().clone()),
            *validated.values.helm_values()
        );
        let older = outcome(Some("jupyterhub"), Some("4.3.5"), None).expect("an older pinned version");
        assert_eq!((older.version.version, older.version.app_version), ("4.3.5", "5.4.6"));
        assert_eq!(outcome(Some("jupyterhub"), None, None).expect("newest").version.version, "4.4.0");
    }

    #[test]
    fn good_values_validate_for_every_entry() {
        let production = valid(
            "fleet-telemetry",
            json!({
                "replicaCount": 3,
                "clickhouse": { "url": "http://clickhouse.fleet.svc:8123/fleet" },
                "broker": { "external": { "url": "mqtts://mosquitto.fleet.svc:8883" } },
                "postgresql": { "existingSecret": "fleet-telemetry-postgresql" },
                "masterKeys": { "existingSecret": "fleet-telemetry-master-keys" },
                "resources": { "requests": { "cpu": "500m", "memory": "512Mi" }, "limits": { "cpu": "2", "memory": "2Gi" } },
            }),
        );
        assert_eq!(production.values.helm_values()["replicaCount"], 3);
        let hub = valid(
            "jupyterhub",
            json!({
                "hub": { "config": {
                    "JupyterHub": { "authenticator_class": "dummy" },
                    "Authenticator": { "admin_users": ["ada", "grace.hopper"] },
                    "DummyAuthenticator": { "password": PASSWORD },
                } },
                "singleuser": {
                    "storage": { "capacity": "20Gi" },
                    "image": { "name": "quay.io/jupyter/scipy-notebook", "tag": "2025-06-30" },
                },
            }),
        );
        assert_eq!(hub.values.helm_values()["hub"]["config"]["Authenticator"]["allow_all"], true, "a default");
        valid("jupyterhub", json!({}));
        valid("mlflow", json!({ "auth": { "adminPassword": PASSWORD } }));
        valid("mlflow", json!({ "auth": { "enabled": false } }));
        let airflow = valid(
            "airflow",
            json!({
                "executor": "KubernetesExecutor",
                "dags": { "gitSync": { "enabled": true, "repo": "https://github.com/acme/dags.git", "branch": "release/2025", "subPath": "dags" } },
                "webserver": { "defaultUser": { "password": PASSWORD } },
            }),
        );
        assert_eq!(airflow.values.helm_values()["webserver"]["defaultUser"]["username"], "admin");
        valid(
            "superset",
            json!({
                "init": { "adminUser": { "username": "ada", "email": "ada@example.com", "password": PASSWORD } },
                "extraSecretEnv": { "SUPERSET_SECRET_KEY": SECRET_KEY },
            }),
        );
        valid("code-server", json!({}));
        valid("code-server", json!({ "password": PASSWORD }));
    }

    /// A request and the problems it must be refused with, each naming its field and code.
    struct Case {
        what: &'static str,
        service: Option<&'static str>,
        version: Option<&'static str>,
        values: Option<Value>,
        expected: &'static [(&'static str, &'static str)],
    }

    fn case(
        what: &'static str,
        service: &'static str,
        values: Value,
        expected: &'static [(&'static str, &'static str)],
    ) -> Case {
        Case { what, service: Some(service), version: None, values: Some(values), expected }
    }

    #[test]
    fn each_bad_input_is_refused_with_its_code_on_its_field() {
        let superset = |admin: Value| json!({ "init": { "adminUser": admin }, "extraSecretEnv": { "SUPERSET_SECRET_KEY": SECRET_KEY } });
        let airflow = |git_sync: Value| json!({ "dags": { "gitSync": git_sync }, "webserver": { "defaultUser": { "password": PASSWORD } } });
        let admins = |users: Value| json!({ "hub": { "config": { "Authenticator": { "admin_users": users } } } });
        let replicas = |count: i64| {
            json!({
                "replicaCount": count,
                "clickhouse": { "url": "http://clickhouse:8123/fleet" },
                "broker": { "external": { "url": "mqtts://mosquitto:8883" } },
                "postgresql": { "existingSecret": "fleet-postgresql" },
                "masterKeys": { "existingSecret": "fleet-master-keys" },
            })
        };
        let cases = [
            Case {
                what: "no service",
                service: None,
                version: None,
                values: None,
                expected: &[("service", "required")],
            },
            Case {
                what: "a blank service",
                service: Some(" "),
                version: None,
                values: None,
                expected: &[("service", "required")],
            },
            Case {
                what: "an unknown service",
                service: Some("grafana"),
                version: None,
                values: None,
                expected: &[("service", "unknown")],
            },
            Case {
                what: "a version that is not pinned",
                service: Some("airflow"),
                version: Some("1.18.0"),
                values: Some(airflow(json!({}))),
                expected: &[("version", "unsupported")],
            },
            case("values that are not an object", "code-server", json!(["password"]), &[("values", "wrong_type")]),
            case(
                "an unknown key",
                "fleet-telemetry",
                json!({ "replicas": 2 }),
                &[("values.replicas", "unknown_field")],
            ),
            case(
                "an unknown nested key",
                "airflow",
                airflow(json!({ "branche": "main" })),
                &[("values.dags.gitSync.branche", "unknown_field")],
            ),
            case(
                "text for a number",
                "fleet-telemetry",
                json!({ "replicaCount": "2" }),
                &[("values.replicaCount", "wrong_type")],
            ),
            case(
                "a fraction for a whole number",
                "fleet-telemetry",
                json!({ "replicaCount": 1.5 }),
                &[("values.replicaCount", "wrong_type")],
            ),
            case(
                "text for a boolean",
                "airflow",
                airflow(json!({ "enabled": "yes" })),
                &[("values.dags.gitSync.enabled", "wrong_type")],
            ),
            case(
                "text for an object",
                "airflow",
                json!({ "dags": "git", "webserver": { "defaultUser": { "password": PASSWORD } } }),
                &[("values.dags", "wrong_type")],
            ),
            case(
                "text for a list",
                "jupyterhub",
                admins(json!("admin")),
                &[("values.hub.config.Authenticator.admin_users", "wrong_type")],
            ),
            case(
                "a number for text",
                "code-server",
                json!({ "password": 123456789012_i64 }),
                &[("values.password", "wrong_type")],
            ),
            case(
                "a value outside the enum",
                "airflow",
                json!({ "executor": "SequentialExecutor", "webserver": { "defaultUser": { "password": PASSWORD } } }),
                &[("values.executor", "invalid_choice")],
            ),
            case(
                "a number below the minimum",
                "fleet-telemetry",
                json!({ "replicaCount": 0 }),
                &[("values.replicaCount", "range")],
            ),
            case("a number above the maximum", "fleet-telemetry", replicas(50), &[("values.replicaCount", "range")]),
            case(
                "text not matching the pattern",
                "fleet-telemetry",
                json!({ "clickhouse": { "url": "ftp://clickhouse:8123" } }),
                &[("values.clickhouse.url", "invalid")],
            ),
            case(
                "credentials where the pattern allows none",
                "fleet-telemetry",
                json!({ "broker": { "external": { "url": "mqtts://user:pw@mosquitto:8883" } } }),
                &[("values.broker.external.url", "invalid")],
            ),
            case(
                "a list item not matching its pattern",
                "jupyterhub",
                admins(json!(["ada", "Grace Hopper"])),
                &[("values.hub.config.Authenticator.admin_users.1", "invalid")],
            ),
            case(
                "text below the minimum length",
                "code-server",
                json!({ "password": "short" }),
                &[("values.password", "too_short")],
            ),
            case(
                "text above the maximum length",
                "airflow",
                airflow(json!({ "branch": "b".repeat(256) })),
                &[("values.dags.gitSync.branch", "too_long")],
            ),
            case(
                "too few list items",
                "jupyterhub",
                admins(json!([])),
                &[("values.hub.config.Authenticator.admin_users", "count")],
            ),
            case(
                "too many list items",
                "jupyterhub",
                admins(json!(vec!["ada"; 21])),
                &[("values.hub.config.Authenticator.admin_users", "count")],
            ),
            case(
                "a missing required value",
                "superset",
                superset(json!({ "email": "ada@example.com" })),
                &[("values.init.adminUser.password", "required")],
            ),
            case(
                "missing secrets",
                "superset",
                json!({ "init": { "adminUser": { "email": "ada@example.com" } } }),
                &[
                    ("values.init.adminUser.password", "required"),
                    ("values.extraSecretEnv.SUPERSET_SECRET_KEY", "required"),
                ],
            ),
            case(
                "not an email address",
                "superset",
                superset(json!({ "email": "ada", "password": PASSWORD })),
                &[("values.init.adminUser.email", "invalid")],
            ),
            case(
                "an address with spaces around",
                "superset",
                superset(json!({ "email": " ada@example.com", "password": PASSWORD })),
                &[("values.init.adminUser.email", "invalid")],
            ),
            case(
                "an address with a plainer form",
                "superset",
                superset(json!({ "email": "\u{212A}ate@example.com", "password": PASSWORD })),
                &[("values.init.adminUser.email", "not_canonical")],
            ),
            case(
                "a value a rule requires",
                "airflow",
                airflow(json!({ "enabled": true })),
                &[("values.dags.gitSync.repo", "required")],
            ),
            case(
                "the dummy sign-in without its password",
                "jupyterhub",
                json!({ "hub": { "config": { "JupyterHub": { "authenticator_class": "dummy" } } } }),
                &[("values.hub.config.DummyAuthenticator.password", "required")],
            ),
            case(
                "an image without its tag",
                "jupyterhub",
                json!({ "singleuser": { "image": { "name": "quay.io/jupyter/scipy-notebook" } } }),
                &[("values.singleuser.image.tag", "required")],
            ),
            case(
                "sign-in without the admin's password",
                "mlflow",
                json!({}),
                &[("values.auth.adminPassword", "required")],
            ),
            case(
                "several replicas on the embedded parts",
                "fleet-telemetry",
                json!({ "replicaCount": 2 }),
                &[
                    ("values.clickhouse.url", "required"),
                    ("values.broker.external.url", "required"),
                    ("values.postgresql.existingSecret", "required"),
                    ("values.masterKeys.existingSecret", "required"),
                ],
            ),
            case(
                "everything at once, in the schema's order",
                "fleet-telemetry",
                json!({ "replicaCount": "three", "clickhouse": { "url": "" }, "resources": { "requests": { "cpu": "lots" } }, "extra": true }),
                &[
                    ("values.replicaCount", "wrong_type"),
                    ("values.clickhouse.url", "invalid"),
                    ("values.resources.requests.cpu", "invalid"),
                    ("values.extra", "unknown_field"),
                ],
            ),
        ];
        for Case { what, service, version, values, expected } in cases {
            let found = outcome(service, version, values).map(|v| v.values).expect_err(what);
            assert_eq!(found, pairs(expected), "{what}");
        }
        assert_eq!(
            outcome(Some("fleet-telemetry"), Some("9.9.9"), Some(json!({ "replicas": 1 })))
                .map(|v| v.values)
                .expect_err("both"),
            pairs(&[("version", "unsupported"), ("values.replicas", "unknown_field")]),
            "the version and the values are reported together"
        );
    }

    #[test]
    fn problems_say_what_to_do() {
        let mut errors = FieldErrors::new();
        validate(Some("fleet-telemetry"), Some("2.0.0"), Some(&json!({ "replicaCount": 2 })), &mut errors);
        let Err(AppError::Client { status, code, errors, .. }) = errors.finish() else { panic!("invalid") };
        assert_eq!((status.as_u16(), code), (422, "validation_failed"));
        assert_eq!(errors[0].message, "fleet-telemetry 2.0.0 is not offered; choose 0.1.0.");
        assert!(errors[1].message.starts_with("More than one replica needs ClickHouse"), "{}", errors[1].message);
        let unknown = problems("fleet-telemetry", json!({ "replicas": 2 }));
        assert_eq!(unknown, pairs(&[("values.replicas", "unknown_field")]));
    }

    #[test]
    fn secrets_are_handed_out_to_seal_and_kept_out_of_what_is_stored() {
        let validated = valid(
            "superset",
            json!({
                "init": { "adminUser": { "email": "ada@example.com", "password": PASSWORD } },
                "extraSecretEnv": { "SUPERSET_SECRET_KEY": SECRET_KEY },
            }),
        );
        let secrets: Vec<(&str, &str)> = validated.values.secrets().collect();
        assert_eq!(
            secrets,
            [("/init/adminUser/password", PASSWORD), ("/extraSecretEnv/SUPERSET_SECRET_KEY", SECRET_KEY)]
        );
        let stored = validated.values.without_secrets().to_string();
        assert!(!stored.contains(PASSWORD) && !stored.contains(SECRET_KEY), "{stored}");
        assert_eq!(
            validated.values.without_secrets()["init"]["adminUser"],
            json!({ "username": "admin", "email": "ada@example.com" })
        );
        assert_eq!(validated.values.helm_values()["init"]["adminUser"]["password"], PASSWORD);
        assert!(!format!("{validated:?}").contains(PASSWORD));

        // A secret left out (code-server generates its own) is simply not there to seal.
        assert_eq!(valid("code-server", json!({})).values.secrets().count(), 0);
        let view = entry("superset").expect("entry").view();
        assert_eq!(view.secrets, ["/init/adminUser/password", "/extraSecretEnv/SUPERSET_SECRET_KEY"]);
        for entry in entries() {
            for pointer in entry.values.secrets() {
                assert!(
                    Value::Object(entry.values.defaults().clone()).pointer(pointer).is_none(),
                    "{pointer} has a default"
                );
                assert_eq!(entry.values.declares(pointer), Some(true));
            }
        }
    }

    #[test]
    fn only_what_this_machine_can_build_runs_on_the_local_target() {
        for entry in entries() {
            assert_eq!(entry.check_target("aws-eks"), Ok(()), "{}", entry.info.service);
            match (entry.info.service, entry.check_target("local")) {
                ("fleet-telemetry", result) => assert_eq!(result, Ok(())),
                (service, Err(invalid)) => {
                    assert_eq!(invalid.code, "local_unsupported", "{service}");
                    assert!(
                        invalid.message.contains("needs a Kubernetes API server"),
                        "{service}: {}",
                        invalid.message
                    );
                    assert!(
                        invalid.message.contains("cannot be pulled on this machine"),
                        "{service}: {}",
                        invalid.message
                    );
                    assert_eq!(entry.view().local.reason.as_deref(), Some(invalid.message.as_str()));
                }
                (service, Ok(())) => panic!("{service} claims to run on the local target"),
            }
        }
    }

    #[test]
    fn outputs_name_a_url_and_credentials_the_schema_declares() {
        for entry in entries() {
            let service = entry.info.service;
            let outputs = entry.info.outputs;
            assert!(
                outputs.iter().any(|o| o.name == "url" && matches!(o.source, OutputSource::Service { .. })),
                "{service}"
            );
            assert!(outputs.iter().any(|o| o.secret), "{service} declares no secret output");
            let names: BTreeSet<&str> = outputs.iter().map(|o| o.name).collect();
            assert_eq!(names.len(), outputs.len(), "{service}: an output twice");
            for output in outputs {
                if let OutputSource::Value { pointer } = output.source {
                    let declared = entry.values.declares(pointer);
                    assert_eq!(
                        declared,
                        Some(output.secret),
                        "{service} {}: {pointer} is not a value of that kind",
                        output.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_view_sends_the_schema_as_written() {
        let view = entry("fleet-telemetry").expect("entry").view();
        let text = view.values_schema.get();
        let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap_or_else(|| panic!("{key}"));
        assert!(
            at("replicaCount") < at("clickhouse") && at("clickhouse") < at("resources"),
            "properties keep their order"
        );
        assert_eq!(view.versions[0].version, "0.1.0");
        assert_eq!(view.chart.source, api::ChartSource::Workspace { path: "deploy/helm/fleet-telemetry".to_owned() });
        assert!(view.local.supported && view.local.reason.is_none());
        let encoded = serde_json::to_value(&view).expect("json");
        assert_eq!(encoded["values_schema"]["$schema"], schema::DIALECT);
        assert_eq!(encoded["chart"]["source"]["type"], "workspace");
        assert_eq!(encoded["defaults"]["replicaCount"], 1);
    }

    // The fleet-telemetry entry against the chart it installs: the same version, and every value
    // the entry exposes a value the chart's own schema takes.

    const CHART_YAML: &str = include_str!("../../../deploy/helm/fleet-telemetry/Chart.yaml");
    const CHART_SCHEMA: &str = include_str!("../../../deploy/helm/fleet-telemetry/values.schema.json");

    fn chart_field(name: &str) -> &'static str {
        CHART_YAML
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(|value| value.trim().trim_matches('"'))
            .unwrap_or_else(|| panic!("Chart.yaml has no {name}"))
    }

    /// A `$ref` into the chart schema's `definitions`, followed.
    fn resolved<'a>(chart: &'a Value, node: &'a Value) -> &'a Value {
        match node["$ref"].as_str().and_then(|r| r.strip_prefix("#/definitions/")) {
            Some(name) => &chart["definitions"][name],
            None => node,
        }
    }

    /// The chart schema's node for the value at `path`, through `properties` or a map's
    /// `additionalProperties`.
    fn chart_node<'a>(chart: &'a Value, path: &[String]) -> Option<&'a Value> {
        let mut node = chart;
        for key in path {
            let next = match node["properties"].get(key) {
                Some(property) => property,
                None if node["additionalProperties"].is_object() => &node["additionalProperties"],
                None => return None,
            };
            node = resolved(chart, next);
        }
        Some(node)
    }

    /// The entry's leaves: every value that is not an object, with its path.
    fn leaves<'a>(node: &'a Value, path: Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>) {
        if node["type"] == "object" {
            for (key, property) in node["properties"].as_object().expect("properties") {
                let mut path = path.clone();
                path.push(key.clone());
                leaves(property, path, out);
            }
        } else {
            out.push((path, node));
        }
    }

    #[test]
    fn the_fleet_telemetry_entry_agrees_with_its_chart() {
        let entry = entry("fleet-telemetry").expect("entry");
        assert_eq!(entry.info.versions[0].version, chart_field("version"));
        assert_eq!(entry.info.versions[0].app_version, chart_field("appVersion"));

        let chart: Value = serde_json::from_str(CHART_SCHEMA).expect("the chart's schema");
        let ours: Value = serde_json::from_str(entry.values.json().get()).expect("the entry's schema");
        let mut exposed = Vec::new();
        leaves(&ours, Vec::new(), &mut exposed);
        assert!(exposed.len() >= 9, "{exposed:?}");
        for (path, node) in exposed {
            let name = path.join(".");
            let theirs = chart_node(&chart, &path).unwrap_or_else(|| panic!("the chart has no value {name}"));
            let kind = node["type"].as_str().expect("a type");
            let types = match &theirs["type"] {
                Value::Array(types) => types.clone(),
                single => vec![single.clone()],
            };
            assert!(types.contains(&json!(kind)), "{name}: {kind}, the chart takes {types:?}");
            if let Some(min) = theirs["minimum"].as_i64() {
                assert!(node["minimum"].as_i64().is_some_and(|ours| ours >= min), "{name}: below the chart's minimum");
            }
            if let Some(max) = theirs["maximum"].as_i64() {
                assert!(node["maximum"].as_i64().is_some_and(|ours| ours <= max), "{name}: above the chart's maximum");
            }
            if let Some(max) = theirs["maxLength"].as_u64() {
                assert!(
                    node["maxLength"].as_u64().is_some_and(|ours| ours <= max),
                    "{name}: longer than the chart takes"
                );
            }
            if let Some(choices) = theirs["enum"].as_array() {
                let ours = node["enum"].as_array().expect("an enum where the chart has one");
                assert!(ours.iter().all(|choice| choices.contains(choice)), "{name}: {ours:?} not all in {choices:?}");
            }
            // Each value the entry gives as an example or a default is one the chart takes.
            let samples: Vec<&Value> = node["default"]
                .as_str()
                .map(|_| &node["default"])
                .into_iter()
                .chain(node["examples"].as_array().into_iter().flatten())
                .collect();
            if kind == "string" {
                assert!(!samples.is_empty(), "{name}: no default or example to check against the chart");
            }
            if let Some(pattern) = theirs["pattern"].as_str() {
                let pattern = regex::Regex::new(pattern).expect("the chart's pattern");
                for sample in samples {
                    assert!(pattern.is_match(sample.as_str().expect("text")), "{name}: the chart refuses {sample}");
                }
            }
        }

        // Several replicas need what the chart's own `if`/`then` demands (for ClickHouse, one of
        // its alternatives: the entry exposes the URL).
        assert_eq!(
            chart["if"]["properties"]["replicaCount"]["minimum"],
            ours["allOf"][0]["if"]["properties"]["replicaCount"]["minimum"]
        );
        let mut demanded: Vec<Vec<String>> = Vec::new();
        fn demands(node: &Value, path: &str, out: &mut Vec<Vec<String>>) {
            if let Some(alternatives) = node["anyOf"].as_array() {
                let mut options = Vec::new();
                for alternative in alternatives {
                    let mut found = Vec::new();
                    demands(alternative, path, &mut found);
                    options.extend(found.into_iter().flatten());
                }
                out.push(options);
            }
            for (key, property) in node["properties"].as_object().into_iter().flatten() {
                let here = format!("{path}.{key}");
                if property["$ref"] == "#/definitions/nonEmpty" {
                    out.push(vec![here]);
                } else {
                    demands(property, &here, out);
                }
            }
        }
        demands(&chart["then"], "values", &mut demanded);
        let refused: BTreeSet<String> =
            problems("fleet-telemetry", json!({ "replicaCount": 2 })).into_iter().map(|(field, _)| field).collect();
        assert_eq!(refused.len(), demanded.len(), "{refused:?} against {demanded:?}");
        for options in demanded {
            assert!(options.iter().any(|field| refused.contains(field)), "the chart demands one of {options:?}");
        }
    }
}
