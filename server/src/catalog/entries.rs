//! The catalog's entries. Every chart version here is pinned: a deployment installs exactly the
//! chart it was validated against, never whatever its repository publishes next. Adding a
//! version means checking that its values still mean what the entry's schema says.

use super::{
    Chart,
    ChartSource::{Git, Repository, Workspace},
    ChartVersion, Info,
    Local::{Supported, Unsupported},
    Output,
    OutputSource::{ManagedToken, Secret, Service, Value},
};

pub(super) static ENTRIES: &[Info] = &[
    Info {
        service: "fleet-telemetry",
        title: "fleet-telemetry",
        description: "The fleet's telemetry service: bike registry and certificates, MQTT ingest with mutual TLS, \
            telemetry storage and the fleet API.",
        chart: Chart { name: "fleet-telemetry", source: Workspace { path: "deploy/helm/fleet-telemetry" } },
        // The chart's own version (deploy/helm/fleet-telemetry/Chart.yaml; a test keeps them equal).
        versions: &[ChartVersion { version: "0.1.0", app_version: "0.1.0" }],
        outputs: &[
            Output {
                name: "url",
                description: "The fleet API.",
                secret: false,
                source: Service { name: "{fullname}", port: 8090 },
            },
            Output {
                name: "admin_token",
                description: "An admin API token of the fleet API, which Fleetplane uses to show the fleet.",
                secret: true,
                // Fleetplane's own, for its fleet proxy; the service gets its hash only.
                source: ManagedToken {
                    prefix: "fltk_",
                    env: "FLEET_ADMIN_TOKEN_SHA256",
                    chart_value: "/adminTokenSha256",
                },
            },
        ],
        // Its image is built here, FROM scratch, by `cargo xtask images`.
        local: Supported,
        schema: include_str!("schemas/fleet-telemetry.json"),
    },
    Info {
        service: "jupyterhub",
        title: "JupyterHub",
        description: "Notebooks for many users: each signs in and gets their own Jupyter server and storage.",
        chart: Chart { name: "jupyterhub", source: Repository { url: "https://hub.jupyter.org/helm-chart/" } },
        // zero-to-jupyterhub's releases (its changelog): 4.4.0 is a security release.
        versions: &[
            ChartVersion { version: "4.4.0", app_version: "5.5.0" },
            ChartVersion { version: "4.3.5", app_version: "5.4.6" },
        ],
        outputs: &[
            Output {
                name: "url",
                description: "Where users sign in.",
                secret: false,
                source: Service { name: "proxy-public", port: 80 },
            },
            Output {
                name: "admin_users",
                description: "The admins' usernames.",
                secret: false,
                source: Value { pointer: "/hub/config/Authenticator/admin_users" },
            },
            Output {
                name: "shared_password",
                description: "The dummy sign-in's shared password, when that is the sign-in.",
                secret: true,
                source: Value { pointer: "/hub/config/DummyAuthenticator/password" },
            },
        ],
        local: Unsupported {
            reason: "JupyterHub needs a Kubernetes API server: its hub starts each user's server as a pod. Its images \
                (quay.io/jupyterhub/k8s-hub and the user images) cannot be pulled on this machine either.",
        },
        schema: include_str!("schemas/jupyterhub.json"),
    },
    Info {
        service: "mlflow",
        title: "MLflow",
        description: "Experiment tracking and a model registry for machine learning.",
        chart: Chart { name: "mlflow", source: Repository { url: "https://community-charts.github.io/helm-charts" } },
        // The community-charts release tagged mlflow-1.11.5.
        versions: &[ChartVersion { version: "1.11.5", app_version: "3.15.1" }],
        outputs: &[
            Output {
                name: "url",
                description: "MLflow's UI and tracking API.",
                secret: false,
                source: Service { name: "{fullname}", port: 80 },
            },
            Output {
                name: "admin_username",
                description: "The admin's username.",
                secret: false,
                source: Value { pointer: "/auth/adminUsername" },
            },
            Output {
                name: "admin_password",
                description: "The admin's password.",
                secret: true,
                source: Value { pointer: "/auth/adminPassword" },
            },
        ],
        local: Unsupported {
            reason: "MLflow's chart needs a Kubernetes API server, and its image (burakince/mlflow) cannot be pulled \
                on this machine.",
        },
        schema: include_str!("schemas/mlflow.json"),
    },
    Info {
        service: "airflow",
        title: "Apache Airflow",
        description: "Workflows as code: DAGs scheduled and run on the cluster.",
        chart: Chart { name: "airflow", source: Repository { url: "https://airflow.apache.org" } },
        // 1.16.0 installs Airflow 2.10.5. Later releases move to Airflow 3 (1.18.0 installs
        // 3.0.2), where the chart's job creating `webserver.defaultUser`, this entry's admin,
        // no longer works as it did (apache/airflow discussion #54094).
        versions: &[ChartVersion { version: "1.16.0", app_version: "2.10.5" }],
        outputs: &[
            Output {
                name: "url",
                description: "Airflow's web UI.",
                secret: false,
                source: Service { name: "{release}-webserver", port: 8080 },
            },
            Output {
                name: "admin_username",
                description: "The admin's username.",
                secret: false,
                source: Value { pointer: "/webserver/defaultUser/username" },
            },
            Output {
                name: "admin_password",
                description: "The admin's password.",
                secret: true,
                source: Value { pointer: "/webserver/defaultUser/password" },
            },
        ],
        local: Unsupported {
            reason: "Airflow's chart needs a Kubernetes API server: its scheduler, workers and database migrations \
                are Kubernetes workloads. Its images (apache/airflow) cannot be pulled on this machine either.",
        },
        schema: include_str!("schemas/airflow.json"),
    },
    Info {
        service: "superset",
        title: "Apache Superset",
        description: "Dashboards and SQL exploration over your databases.",
        chart: Chart { name: "superset", source: Repository { url: "https://apache.github.io/superset" } },
        // A published release (`helm search repo superset/superset` lists 0.21.1 with Superset
        // 6.1.0). Upstream has since deprecated the chart in favour of an operator
        // (apache/superset#44097).
        versions: &[ChartVersion { version: "0.21.1", app_version: "6.1.0" }],
        outputs: &[
            Output {
                name: "url",
                description: "Superset's web UI.",
                secret: false,
                source: Service { name: "{fullname}", port: 8088 },
            },
            Output {
                name: "admin_username",
                description: "The admin's username.",
                secret: false,
                source: Value { pointer: "/init/adminUser/username" },
            },
            Output {
                name: "admin_password",
                description: "The admin's password.",
                secret: true,
                source: Value { pointer: "/init/adminUser/password" },
            },
        ],
        local: Unsupported {
            reason: "Superset's chart needs a Kubernetes API server, and brings PostgreSQL and Redis as subcharts; \
                their images (apache/superset, bitnami's postgresql and redis) cannot be pulled on this machine.",
        },
        schema: include_str!("schemas/superset.json"),
    },
    Info {
        service: "code-server",
        title: "code-server",
        description: "VS Code in the browser, with its workspace on a persistent volume.",
        // code-server publishes its chart only in its repository; this is the commit that made
        // it 3.48.0, for code-server 4.133.0.
        chart: Chart {
            name: "code-server",
            source: Git {
                url: "https://github.com/coder/code-server",
                commit: "c22dc74d53e0c07e0bbba3aa3eefb2c86f682f30",
                path: "ci/helm-chart",
            },
        },
        versions: &[ChartVersion { version: "3.48.0", app_version: "4.133.0" }],
        outputs: &[
            Output {
                name: "url",
                description: "The editor.",
                secret: false,
                source: Service { name: "{fullname}", port: 8080 },
            },
            Output {
                name: "password",
                description: "The editor's password: the one given, or the one the chart generated.",
                secret: true,
                source: Secret { name: "{fullname}", key: "password" },
            },
        ],
        local: Unsupported {
            reason: "code-server's chart needs a Kubernetes API server, and its image (codercom/code-server) cannot \
                be pulled on this machine.",
        },
        schema: include_str!("schemas/code-server.json"),
    },
];
