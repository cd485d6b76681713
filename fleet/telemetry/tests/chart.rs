//! The Helm chart (`deploy/helm/fleet-telemetry`), linted and rendered by the real helm binary:
//! what it renders runs locked down, with probes and limits and without a secret value in it,
//! as a StatefulSet whose pods keep their MQTT sessions; and values the service would refuse,
//! or that would lose data, are refused before anything reaches a cluster.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const RELEASE: &str = "fleet-telemetry";
/// The values set with external ClickHouse, PostgreSQL and broker, three replicas.
const PRODUCTION: &str = "ci/production-values.yaml";

#[test]
#[ignore = "needs helm: run `cargo xtask test`"]
fn the_chart_lints_strictly_with_the_defaults_and_with_a_production_set() {
    let helm = Helm::new();
    for values in [&[][..], &["--values", PRODUCTION]] {
        let output = helm.run("lint", &[&["--strict"], values].concat());
        assert!(output.status.success(), "helm lint {values:?} failed:\n{}", text(&output));
    }
}

#[test]
#[ignore = "needs helm: run `cargo xtask test`"]
fn the_defaults_run_one_replica_on_sqlite_and_the_embedded_broker_with_a_volume() {
    let manifests = Helm::new().template(&[]);
    let statefulset = manifests.one("StatefulSet");
    assert_eq!(statefulset["spec"]["replicas"], 1);
    assert!(manifests.all("Deployment").is_empty(), "the workload is a StatefulSet, not a Deployment");
    assert_ingest_client_id_is_the_pod_name(&manifests);

    let config = manifests.config();
    assert_eq!(config["FLEET_LISTEN"], "0.0.0.0:8090");
    assert_eq!(config["FLEET_STORE"], "sqlite");
    assert_eq!(config["FLEET_BROKER_LISTEN"], "0.0.0.0:8883");
    assert_eq!(config["FLEET_REPLICATED"], "off");
    assert!(config.get("FLEET_BROKER").is_none(), "{config:?}");
    assert!(manifests.container()["env"].as_array().is_some_and(|env| env.len() == 1), "only the client id: no secret");

    let ports: Vec<&Value> = manifests.service()["spec"]["ports"].as_array().expect("ports").iter().collect();
    assert_eq!(ports.iter().map(|p| p["port"].clone()).collect::<Vec<_>>(), [8090, 8883], "the API and the broker");

    // The root filesystem is read-only: the data directory is the claim's volume.
    let claims = statefulset["spec"]["volumeClaimTemplates"].as_array().expect("volumeClaimTemplates");
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["metadata"]["name"], "data");
    assert_eq!(claims[0]["spec"]["resources"]["requests"]["storage"], "10Gi");
    assert_eq!(mount(manifests.container(), "data")["mountPath"], config["FLEET_DATA_DIR"]);
    assert_eq!(mount(manifests.container(), "tmp")["mountPath"], "/tmp");

    assert_eq!(manifests.container()["resources"]["limits"]["cpu"], "1");

    // The image `cargo xtask images` tags with this crate's version (the chart's appVersion),
    // run with the entrypoint and command it is built with.
    let container = manifests.container();
    assert_eq!(container["image"], format!("fleetplane/fleet-telemetry:{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(container["command"], serde_json::json!(["/fleet-telemetry"]));
    assert_eq!(container["args"], serde_json::json!(["serve"]));

    let pdb = manifests.one("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], statefulset["spec"]["selector"]["matchLabels"]);
}

#[test]
#[ignore = "needs helm: run `cargo xtask test`"]
fn the_production_set_runs_three_replicas_sharing_latest_states_with_every_secret_referenced() {
    let manifests = Helm::new().template(&["--values", PRODUCTION]);
    assert_eq!(manifests.one("StatefulSet")["spec"]["replicas"], 3);
    assert_ingest_client_id_is_the_pod_name(&manifests);
    manifests.one("PodDisruptionBudget");

    let config = manifests.config();
    assert_eq!(config["FLEET_REPLICATED"], "on");
    assert_eq!(config["FLEET_BROKER"], "mqtts://mosquitto.fleet.svc:8883");
    for absent in ["FLEET_STORE", "FLEET_BROKER_LISTEN", "FLEET_DATABASE_URL", "FLEET_MASTER_KEYS"] {
        assert!(config.get(absent).is_none(), "{absent} is not in the ConfigMap: {config:?}");
    }
    // ClickHouse's own window and batch wait, not SQLite's: the service picks them by store.
    for absent in ["FLEET_INFLIGHT", "FLEET_BATCH_LINGER_MS"] {
        assert!(config.get(absent).is_none(), "{absent} is left to the service: {config:?}");
    }
    let tuned =
        Helm::new().template(&["--values", PRODUCTION, "--set", "config.inflight=20000,config.batchLingerMs=400"]);
    assert_eq!(tuned.config()["FLEET_INFLIGHT"], "20000");
    assert_eq!(tuned.config()["FLEET_BATCH_LINGER_MS"], "400");

    let container = manifests.container();
    for (variable, secret, key) in [
        ("FLEET_MASTER_KEYS", "fleet-telemetry-master-keys", "master-keys"),
        ("FLEET_DATABASE_URL", "fleet-telemetry-postgresql", "database-url"),
        ("FLEET_STORE", "fleet-telemetry-clickhouse", "url"),
    ] {
        let reference = &env(container, variable)["valueFrom"]["secretKeyRef"];
        assert_eq!(reference["name"], secret, "{variable}");
        assert_eq!(reference["key"], key, "{variable}");
    }

    // The ingest's certificate, key and the broker's CA, from one Secret mounted read-only.
    let tls = mount(container, "ingest-tls");
    assert_eq!(tls["readOnly"], true);
    let volume = manifests.pod_spec()["volumes"]
        .as_array()
        .and_then(|volumes| volumes.iter().find(|v| v["name"] == "ingest-tls"))
        .expect("the ingest-tls volume");
    assert_eq!(volume["secret"]["secretName"], "fleet-telemetry-ingest-tls");
    let dir = tls["mountPath"].as_str().expect("mountPath");
    assert_eq!(config["FLEET_INGEST_CERT"], format!("{dir}/tls.crt"));
    assert_eq!(config["FLEET_INGEST_KEY"], format!("{dir}/tls.key"));
    assert_eq!(config["FLEET_BROKER_CA"], format!("{dir}/ca.crt"));

    // The bikes use the external broker: the Service carries only the API.
    let ports = manifests.service()["spec"]["ports"].as_array().expect("ports");
    assert_eq!(ports.iter().map(|p| p["port"].clone()).collect::<Vec<_>>(), [8090]);
    assert!(container["ports"].as_array().expect("ports").iter().all(|p| p["name"] != "mqtts"));
}

#[test]
#[ignore = "needs helm: run `cargo xtask test`"]
fn without_persistence_the_data_directory_is_an_empty_dir() {
    let manifests = Helm::new().template(&["--set", "persistence.enabled=false"]);
    assert!(manifests.one("StatefulSet")["spec"].get("volumeClaimTemplates").is_none());
    let volumes = manifests.pod_spec()["volumes"].as_array().expect("volumes");
    let data = volumes.iter().find(|v| v["name"] == "data").expect("the data volume");
    assert!(data["emptyDir"].is_object(), "{data}");
    mount(manifests.container(), "data");
}

#[test]
#[ignore = "needs helm: run `cargo xtask test`"]
fn values_the_service_would_refuse_are_refused_naming_what_to_set() {
    let helm = Helm::new();
    let production = ["--values", PRODUCTION];
    let skip_schema = "--skip-schema-validation";
    // helm checks the schema before it renders, so the schema's message comes first; the
    // templates refuse the same in more words, also when the schema is skipped.
    let several = helm.run_template(&["--set", "replicaCount=2"]);
    assert!(!several.status.success(), "two replicas on the embedded defaults were accepted");
    for needed in ["masterKeys.existingSecret", "postgresql.existingSecret", "clickhouse.url", "broker.external.url"] {
        let message = format!("{needed}: String length must be greater than or equal to 1");
        assert!(text(&several).contains(&message), "expected {message:?} in:\n{}", text(&several));
    }

    type Case<'a> = (&'a [&'a str], &'a str);
    let cases: &[Case] = &[
        (&[&production[..], &["--set", "replicaCount=2,clickhouse.existingSecret="]].concat(), "clickhouse.url"),
        (
            &[&production[..], &["--set", "replicaCount=2,clickhouse.existingSecret=", skip_schema]].concat(),
            "replicaCount is 2, but the SQLite telemetry store belongs to one process: set clickhouse.url or \
             clickhouse.existingSecret",
        ),
        (
            &[&production[..], &["--set", "postgresql.existingSecret=", skip_schema]].concat(),
            "the SQLite registry belongs to one process: set postgresql.existingSecret",
        ),
        (
            &[&production[..], &["--set", "broker.external.url=,broker.external.tls.existingSecret=", skip_schema]]
                .concat(),
            "the embedded broker belongs to one process",
        ),
        (&["--set", "replicas=2"], "(root): Additional property replicas is not allowed"),
        (&["--set", "persistence.sise=1Gi"], "persistence: Additional property sise is not allowed"),
        (&["--set", "replicaCount=-1"], "replicaCount: Must be greater than or equal to 0"),
        (
            &["--set", "broker.external.url=mqtt://broker:1883"],
            "broker.external.url: Does not match pattern '^(mqtts://",
        ),
        (
            &["--set", "broker.external.url=mqtt://broker:1883", skip_schema],
            "broker.external.url `mqtt://broker:1883` is not an mqtts:// URL: bikes and the ingest always use TLS",
        ),
        (
            &["--set", "clickhouse.url=http://clickhouse:8123/fleet,clickhouse.existingSecret=clickhouse"],
            "clickhouse: set url or existingSecret, not both",
        ),
        (
            &["--set", "broker.external.tls.existingSecret=ingest-tls"],
            "broker.external.tls is for an external broker: set broker.external.url too",
        ),
        (
            &["--set", "persistence.enabled=false,postgresql.existingSecret=postgresql"],
            "the generated master key would be lost with the pod",
        ),
        (&["--set", "resources.limits=null"], "resources: limits is required"),
    ];
    for (args, message) in cases {
        let output = helm.run_template(args);
        assert!(!output.status.success(), "helm template {args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "helm template {args:?}: expected {message:?} in:\n{stderr}");
    }

    let typo = helm.run("lint", &["--set", "replicas=2"]);
    assert!(!typo.status.success(), "helm lint accepted an unknown key");
    assert!(text(&typo).contains("Additional property replicas is not allowed"), "{}", text(&typo));
}

/// The helm named by `HELM`, over the chart in this workspace, with homes of its own so that no
/// repository or plugin of the machine's user takes part.
struct Helm {
    binary: PathBuf,
    chart: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new() -> Self {
        let binary = std::env::var_os("HELM").map(PathBuf::from).unwrap_or_else(|| {
            panic!("HELM is not set: it names the helm binary these tests run (`cargo xtask test` installs one)")
        });
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/fleet-telemetry");
        let home = tempfile::tempdir().expect("a home for helm");
        Self { binary, chart, home }
    }

    /// `helm <command> CHART <args>`, in the chart's directory (values files are named from it).
    fn run(&self, command: &str, args: &[&str]) -> Output {
        self.command().arg(command).arg(&self.chart).args(args).output().expect("running helm")
    }

    fn run_template(&self, args: &[&str]) -> Output {
        self.command()
            .args(["template", RELEASE])
            .arg(&self.chart)
            .args(["--namespace", "fleet"])
            .args(args)
            .output()
            .expect("running helm")
    }

    /// What `helm template` renders with `args`, checked for what every rendering must hold.
    fn template(&self, args: &[&str]) -> Manifests {
        let output = self.run_template(args);
        assert!(output.status.success(), "helm template {args:?} failed:\n{}", text(&output));
        let stdout = String::from_utf8(output.stdout).expect("UTF-8 manifests");
        let documents = YamlLoader::load_from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}"));
        let manifests = Manifests(documents.into_iter().map(json).filter(|doc| !doc.is_null()).collect());
        manifests.assert_locked_down();
        manifests.assert_no_secret_values();
        manifests
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.chart)
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"));
        command
    }
}

struct Manifests(Vec<Value>);

impl Manifests {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|doc| doc["kind"] == kind).collect()
    }

    /// The one object of `kind` named after the release.
    fn one(&self, kind: &str) -> &Value {
        let named: Vec<&Value> = self.all(kind).into_iter().filter(|doc| doc["metadata"]["name"] == RELEASE).collect();
        assert_eq!(named.len(), 1, "one {kind} named {RELEASE}: {:#?}", self.0);
        named[0]
    }

    fn service(&self) -> &Value {
        self.one("Service")
    }

    fn config(&self) -> &serde_json::Map<String, Value> {
        self.one("ConfigMap")["data"].as_object().expect("the ConfigMap's data")
    }

    fn pod_spec(&self) -> &Value {
        &self.one("StatefulSet")["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let containers = self.pod_spec()["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1);
        &containers[0]
    }

    /// Every container of every workload probes its health, is limited, runs as the image's
    /// non-root user on a read-only root filesystem, and can gain no privilege.
    fn assert_locked_down(&self) {
        for doc in &self.0 {
            let Some(pod) = doc.pointer("/spec/template/spec") else { continue };
            let what = format!("{} {}", doc["kind"], doc["metadata"]["name"]);
            let init = pod["initContainers"].as_array().into_iter().flatten();
            let containers: Vec<&Value> = pod["containers"].as_array().into_iter().flatten().chain(init).collect();
            assert!(!containers.is_empty(), "{what} has no containers");
            for container in containers {
                let what = format!("{what}, container {}", container["name"]);
                for probe in ["livenessProbe", "readinessProbe"] {
                    assert!(container[probe]["httpGet"].is_object(), "{what} has no {probe}");
                }
                assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz", "{what}");
                assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz", "{what}");
                assert_eq!(container["startupProbe"]["httpGet"]["path"], "/healthz", "{what}");
                // A CPU limit is the operator's choice (the defaults set one); memory is always bounded.
                for (bound, resources) in [("requests", &["cpu", "memory"][..]), ("limits", &["memory"])] {
                    for resource in resources {
                        assert!(
                            !container["resources"][bound][resource].is_null(),
                            "{what} has no {bound}.{resource}: {}",
                            container["resources"]
                        );
                    }
                }
                let security = &container["securityContext"];
                assert_eq!(security["runAsNonRoot"], true, "{what}");
                assert_eq!(security["runAsUser"], 65532, "{what}");
                assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{what}");
                assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault", "{what}");
            }
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
        }
    }

    /// Secrets are only referenced by name: no value from the values reaches a manifest.
    fn assert_no_secret_values(&self) {
        for secret in self.all("Secret") {
            for field in ["data", "stringData"] {
                assert!(secret.get(field).is_none(), "Secret {} carries {field}", secret["metadata"]["name"]);
            }
        }
    }
}

/// The ingest's MQTT client id is its pod's name: stable across restarts (the broker's session
/// with what it has not yet had acknowledged survives), distinct per replica.
fn assert_ingest_client_id_is_the_pod_name(manifests: &Manifests) {
    let client_id = env(manifests.container(), "FLEET_INGEST_CLIENT_ID");
    assert_eq!(client_id["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name", "{client_id}");
    assert!(manifests.config().get("FLEET_INGEST_CLIENT_ID").is_none());
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {}", container["env"]))
}

fn mount<'a>(container: &'a Value, volume: &str) -> &'a Value {
    container["volumeMounts"]
        .as_array()
        .and_then(|mounts| mounts.iter().find(|m| m["name"] == volume))
        .unwrap_or_else(|| panic!("volume {volume} is not mounted: {}", container["volumeMounts"]))
}

/// A YAML document as JSON, to be read with serde_json's indexing.
fn json(yaml: Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => {
            text.parse().ok().and_then(serde_json::Number::from_f64).map_or(Value::String(text), Value::Number)
        }
        Yaml::Integer(number) => Value::from(number),
        Yaml::String(text) => Value::String(text),
        Yaml::Boolean(flag) => Value::Bool(flag),
        Yaml::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let key = match json(key) {
                        Value::String(key) => key,
                        other => other.to_string(),
                    };
                    (key, json(value))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        Yaml::Alias(_) | Yaml::BadValue => panic!("helm rendered YAML this test cannot read: {yaml:?}"),
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
