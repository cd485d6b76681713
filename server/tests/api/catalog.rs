//! The deployment catalog: what can be deployed onto clusters, for any signed-in caller.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestApp;

const SERVICES: [&str; 6] = ["fleet-telemetry", "jupyterhub", "mlflow", "airflow", "superset", "code-server"];

#[tokio::test]
async fn signed_in_users_read_the_whole_catalog() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let catalog = ada.get("/api/v1/catalog").await.expect_status(StatusCode::OK).json();
    let entries = catalog.as_array().expect("a list");
    let services: Vec<&str> = entries.iter().map(|e| e["service"].as_str().expect("service")).collect();
    assert_eq!(services, SERVICES);
    for entry in entries {
        let service = &entry["service"];
        assert!(entry["title"].is_string() && entry["description"].is_string(), "{service}");
        assert!(entry["chart"]["name"].is_string(), "{service}");
        assert!(["workspace", "repository", "git"].contains(&entry["chart"]["source"]["type"].as_str().expect("type")));
        let version = &entry["versions"][0];
        assert!(version["version"].is_string() && version["app_version"].is_string(), "{service}");
        let schema = &entry["values_schema"];
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{service}");
        assert_eq!((&schema["type"], &schema["additionalProperties"]), (&json!("object"), &json!(false)), "{service}");
        assert!(entry["defaults"].is_object(), "{service}");
        // The secrets are named, marked in the schema, and never given a default.
        for pointer in entry["secrets"].as_array().expect("secrets") {
            let pointer = pointer.as_str().expect("a pointer");
            let property = pointer.split('/').skip(1).fold(schema, |node, key| &node["properties"][key]);
            assert_eq!((&property["writeOnly"], &property["x-fleetplane-secret"]), (&json!(true), &json!(true)));
            assert!(entry["defaults"].pointer(pointer).is_none(), "{service} {pointer}");
        }
        let outputs = entry["outputs"].as_array().expect("outputs");
        assert!(outputs.iter().any(|o| o["name"] == "url"), "{service}");
        assert!(outputs.iter().any(|o| o["secret"] == true), "{service}: its credentials are secret outputs");
        let local = &entry["local"];
        if service == "fleet-telemetry" {
            assert_eq!(*local, json!({ "supported": true }));
        } else {
            assert_eq!(local["supported"], false, "{service}");
            assert!(local["reason"].as_str().is_some_and(|r| r.contains("Kubernetes API server")), "{service}");
        }
    }
    // The schema goes out as written: its properties in their order.
    let fleet = ada.get("/api/v1/catalog/fleet-telemetry").await.expect_status(StatusCode::OK).text;
    let at = |key: &str| fleet.find(&format!("\"{key}\"")).unwrap_or_else(|| panic!("{key} in {fleet}"));
    assert!(at("replicaCount") < at("clickhouse") && at("clickhouse") < at("resources"));
}

#[tokio::test]
async fn one_entry_is_read_by_its_service() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let listed = ada.get("/api/v1/catalog").await.expect_status(StatusCode::OK).json();
    for (index, service) in SERVICES.iter().enumerate() {
        let entry = ada.get(&format!("/api/v1/catalog/{service}")).await.expect_status(StatusCode::OK).json();
        assert_eq!(entry, listed[index], "{service}");
    }
    let airflow = ada.get("/api/v1/catalog/airflow").await.expect_status(StatusCode::OK).json();
    assert_eq!(
        airflow["chart"],
        json!({ "name": "airflow", "source": { "type": "repository", "url": "https://airflow.apache.org" } })
    );
    assert_eq!(airflow["defaults"]["executor"], "CeleryExecutor");
    let executors = &airflow["values_schema"]["properties"]["executor"]["enum"];
    assert!(executors.as_array().is_some_and(|e| e.contains(&json!("KubernetesExecutor"))), "{executors}");
    assert_eq!(airflow["secrets"], json!(["/webserver/defaultUser/password"]));
}

#[tokio::test]
async fn an_unknown_service_is_a_problem_with_a_stable_code() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    for missing in ["grafana", "Airflow", "airflow%20", "fleet-telemetry.json"] {
        let problem = ada.get(&format!("/api/v1/catalog/{missing}")).await;
        problem.expect_problem(StatusCode::NOT_FOUND, "service_not_found");
    }
}

#[tokio::test]
async fn the_catalog_needs_a_signed_in_caller() {
    let app = TestApp::spawn().await;
    let anonymous = app.client();
    for path in ["/api/v1/catalog", "/api/v1/catalog/airflow", "/api/v1/catalog/grafana"] {
        anonymous.get(path).await.expect_problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    // Scripts read it with an API token.
    let ada = app.user("ada").await;
    let created = ada.post("/api/v1/me/tokens", json!({ "name": "catalog" })).await.expect_status(StatusCode::CREATED);
    let token = created.json()["token"].as_str().expect("token").to_owned();
    let url = ada.base.join("/api/v1/catalog/superset").expect("url");
    let entry: Value =
        ada.send(reqwest::Client::new().get(url).bearer_auth(token)).await.expect_status(StatusCode::OK).json();
    assert_eq!(entry["service"], "superset");
}

#[tokio::test]
async fn the_openapi_document_describes_the_catalog() {
    let app = TestApp::spawn().await;
    let doc = app.client().get("/api/openapi.json").await.expect_status(StatusCode::OK).json();
    let list = &doc["paths"]["/api/v1/catalog"]["get"];
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"],
        "#/components/schemas/CatalogEntry"
    );
    let one = &doc["paths"]["/api/v1/catalog/{service}"]["get"];
    assert_eq!(
        one["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CatalogEntry"
    );
    assert!(one["responses"]["404"].is_object());
    assert!(list["security"].is_null(), "it takes the document's default: a session or a token");
    let entry = &doc["components"]["schemas"]["CatalogEntry"];
    assert_eq!(entry["properties"]["values_schema"]["type"], "object", "{entry}");
    let required: Vec<&str> =
        entry["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
    for field in ["service", "chart", "versions", "values_schema", "defaults", "secrets", "outputs", "local"] {
        assert!(required.contains(&field), "{field} in {required:?}");
    }
}
