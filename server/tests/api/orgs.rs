//! Organizations, members and roles, tenancy, and the audit log.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Client, TestApp};

async fn user_id(client: &Client) -> String {
    client.get("/api/v1/me").await.json()["id"].as_str().expect("id").to_owned()
}

/// An organization `acme` owned by ada, with grace as `role`.
async fn acme_with_grace(app: &TestApp, role: &str) -> (Client, Client, String) {
    let ada = app.user("ada").await;
    let grace = app.user("grace").await;
    ada.post("/api/v1/orgs", json!({ "name": "Acme", "display_name": "Acme Corp" }))
        .await
        .expect_status(StatusCode::CREATED);
    ada.add_to_org("acme", &grace, role).await;
    let grace_id = user_id(&grace).await;
    (ada, grace, grace_id)
}

fn roles(members: &Value) -> Vec<(String, String)> {
    members
        .as_array()
        .expect("list")
        .iter()
        .map(|m| (m["username"].as_str().expect("name").to_owned(), m["role"].as_str().expect("role").to_owned()))
        .collect()
}

#[tokio::test]
async fn create_an_organization_and_manage_its_members() {
    let app = TestApp::spawn().await;
    let (ada, grace, grace_id) = acme_with_grace(&app, "operator").await;

    let org = ada.get("/api/v1/orgs/acme").await.expect_status(StatusCode::OK).json();
    assert_eq!(
        (org["name"].as_str(), org["display_name"].as_str(), org["role"].as_str()),
        (Some("acme"), Some("Acme Corp"), Some("owner"))
    );
    assert_eq!(grace.get("/api/v1/orgs/ACME").await.json()["role"], "operator");

    let members = grace.get("/api/v1/orgs/acme/members").await.expect_status(StatusCode::OK).json();
    assert_eq!(roles(&members), [("ada".into(), "owner".into()), ("grace".into(), "operator".into())]);

    let promoted = ada.patch(&format!("/api/v1/orgs/acme/members/{grace_id}"), json!({ "role": "admin" })).await;
    assert_eq!(promoted.expect_status(StatusCode::OK).json()["role"], "admin");
    ada.delete(&format!("/api/v1/orgs/acme/members/{grace_id}")).await.expect_status(StatusCode::NO_CONTENT);
    grace.get("/api/v1/orgs/acme").await.expect_problem(StatusCode::NOT_FOUND, "org_not_found");
    let names: Vec<String> = grace
        .get("/api/v1/orgs")
        .await
        .json()
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o["name"].as_str().expect("n").to_owned())
        .collect();
    assert_eq!(names, ["grace"]);
}

#[tokio::test]
async fn organization_input_is_validated_and_names_are_unique() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    ada.post("/api/v1/orgs", json!({ "name": "acme" })).await.expect_status(StatusCode::CREATED);
    app.assert_unchanged(async {
        let taken = ada.post("/api/v1/orgs", json!({ "name": "ACME" })).await;
        taken.expect_problem(StatusCode::CONFLICT, "org_name_taken");
        assert_eq!(taken.fields(), ["name"]);
        for (body, field) in [
            (json!({ "name": "a" }), "name"),
            (json!({ "name": "-acme" }), "name"),
            (json!({}), "name"),
            (json!({ "name": "okay", "display_name": "x".repeat(101) }), "display_name"),
        ] {
            let refused = ada.post("/api/v1/orgs", body.clone()).await;
            refused.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            assert_eq!(refused.fields(), [field], "{body}");
        }
    })
    .await;
}

#[tokio::test]
async fn invitations_refuse_members_duplicates_and_bad_input_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (ada, _grace, _) = acme_with_grace(&app, "viewer").await;
    ada.post("/api/v1/orgs/acme/invitations", json!({ "email": "linus@example.com", "role": "viewer" }))
        .await
        .expect_status(StatusCode::CREATED);
    app.assert_unchanged(async {
        let invite = |email: &str, role: &str| {
            ada.post("/api/v1/orgs/acme/invitations", json!({ "email": email, "role": role }))
        };
        let member = invite("GRACE@example.com", "admin").await;
        member.expect_problem(StatusCode::CONFLICT, "already_member");
        assert_eq!(member.fields(), ["email"]);
        invite("Linus@Example.com", "admin").await.expect_problem(StatusCode::CONFLICT, "already_invited");
        let bad_role = invite("new@example.com", "superuser").await;
        bad_role.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(bad_role.fields(), ["role"]);
        let bad_email = invite("grace", "viewer").await;
        assert_eq!(bad_email.fields(), ["email"]);
        let unknown = ada.delete(&format!("/api/v1/orgs/acme/invitations/{}", uuid::Uuid::now_v7())).await;
        unknown.expect_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    })
    .await;
}

#[tokio::test]
async fn roles_decide_who_may_manage_members() {
    let app = TestApp::spawn().await;
    let (ada, grace, grace_id) = acme_with_grace(&app, "viewer").await;
    let linus = app.user("linus").await;
    let ada_id = user_id(&ada).await;

    app.assert_unchanged(async {
        for role in ["viewer", "operator"] {
            ada.patch(&format!("/api/v1/orgs/acme/members/{grace_id}"), json!({ "role": role }))
                .await
                .expect_status(StatusCode::OK);
            grace
                .post("/api/v1/orgs/acme/invitations", json!({ "email": "linus@example.com", "role": "viewer" }))
                .await
                .expect_problem(StatusCode::FORBIDDEN, "forbidden");
            grace.get("/api/v1/orgs/acme/invitations").await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
            grace
                .patch(&format!("/api/v1/orgs/acme/members/{ada_id}"), json!({ "role": "viewer" }))
                .await
                .expect_problem(StatusCode::FORBIDDEN, "forbidden");
            grace
                .delete(&format!("/api/v1/orgs/acme/members/{ada_id}"))
                .await
                .expect_problem(StatusCode::FORBIDDEN, "forbidden");
            grace.get("/api/v1/orgs/acme/audit").await.expect_problem(StatusCode::FORBIDDEN, "forbidden");
        }
        // An admin manages members, but owners are the owners' business.
        ada.patch(&format!("/api/v1/orgs/acme/members/{grace_id}"), json!({ "role": "admin" }))
            .await
            .expect_status(StatusCode::OK);
        grace
            .post("/api/v1/orgs/acme/invitations", json!({ "email": "linus@example.com", "role": "owner" }))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "owner_required");
        grace
            .patch(&format!("/api/v1/orgs/acme/members/{ada_id}"), json!({ "role": "admin" }))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "owner_required");
        grace
            .delete(&format!("/api/v1/orgs/acme/members/{ada_id}"))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "owner_required");
        grace
            .patch(&format!("/api/v1/orgs/acme/members/{grace_id}"), json!({ "role": "owner" }))
            .await
            .expect_problem(StatusCode::FORBIDDEN, "owner_required");
    })
    .await;

    grace.add_to_org("acme", &linus, "operator").await;
    let linus_id = user_id(&linus).await;
    grace.delete(&format!("/api/v1/orgs/acme/members/{linus_id}")).await.expect_status(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_last_owner_can_be_neither_removed_nor_demoted() {
    let app = TestApp::spawn().await;
    let (ada, grace, grace_id) = acme_with_grace(&app, "admin").await;
    let ada_id = user_id(&ada).await;

    app.assert_unchanged(async {
        ada.patch(&format!("/api/v1/orgs/acme/members/{ada_id}"), json!({ "role": "admin" }))
            .await
            .expect_problem(StatusCode::CONFLICT, "last_owner");
        ada.delete(&format!("/api/v1/orgs/acme/members/{ada_id}"))
            .await
            .expect_problem(StatusCode::CONFLICT, "last_owner");
    })
    .await;
    assert_eq!(ada.get("/api/v1/orgs/acme").await.json()["role"], "owner");

    // With a second owner, the first may step down and then leave.
    ada.patch(&format!("/api/v1/orgs/acme/members/{grace_id}"), json!({ "role": "owner" }))
        .await
        .expect_status(StatusCode::OK);
    ada.patch(&format!("/api/v1/orgs/acme/members/{ada_id}"), json!({ "role": "viewer" }))
        .await
        .expect_status(StatusCode::OK);
    ada.delete(&format!("/api/v1/orgs/acme/members/{ada_id}")).await.expect_status(StatusCode::NO_CONTENT);
    grace
        .delete(&format!("/api/v1/orgs/acme/members/{grace_id}"))
        .await
        .expect_problem(StatusCode::CONFLICT, "last_owner");
}

#[tokio::test]
async fn anyone_may_leave_an_organization() {
    let app = TestApp::spawn().await;
    let (_ada, grace, grace_id) = acme_with_grace(&app, "viewer").await;
    grace.delete(&format!("/api/v1/orgs/acme/members/{grace_id}")).await.expect_status(StatusCode::NO_CONTENT);
    grace.get("/api/v1/orgs/acme/members").await.expect_problem(StatusCode::NOT_FOUND, "org_not_found");
}

#[tokio::test]
async fn another_organization_is_invisible_on_every_route() {
    let app = TestApp::spawn().await;
    let (ada, _grace, grace_id) = acme_with_grace(&app, "viewer").await;
    let eve = app.user("eve").await;
    let ada_id = user_id(&ada).await;

    app.assert_unchanged(async {
        let routes = [
            ("GET", "/api/v1/orgs/acme".to_owned(), json!(null)),
            ("GET", "/api/v1/orgs/acme/members".to_owned(), json!(null)),
            (
                "POST",
                "/api/v1/orgs/acme/invitations".to_owned(),
                json!({ "email": "eve@example.com", "role": "owner" }),
            ),
            ("GET", "/api/v1/orgs/acme/invitations".to_owned(), json!(null)),
            ("DELETE", format!("/api/v1/orgs/acme/invitations/{}", uuid::Uuid::now_v7()), json!(null)),
            ("PATCH", format!("/api/v1/orgs/acme/members/{grace_id}"), json!({ "role": "owner" })),
            ("DELETE", format!("/api/v1/orgs/acme/members/{ada_id}"), json!(null)),
            ("GET", "/api/v1/orgs/acme/audit".to_owned(), json!(null)),
        ];
        for (method, path, body) in routes {
            let request = eve.request(method.parse().expect("method"), &path);
            let request = if body.is_null() { request } else { request.json(&body) };
            let answer = eve.send(request).await;
            let problem = answer.expect_problem(StatusCode::NOT_FOUND, "org_not_found");
            // Same answer as for an organization that does not exist: nothing leaks.
            let missing =
                eve.send(eve.request(method.parse().expect("method"), &path.replace("acme", "nope")).json(&body)).await;
            assert_eq!(missing.json()["code"], problem["code"]);
        }
    })
    .await;

    // A member of one organization cannot reach a member of another through it.
    let eve_id = user_id(&eve).await;
    ada.patch(&format!("/api/v1/orgs/acme/members/{eve_id}"), json!({ "role": "viewer" }))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "member_not_found");
    ada.get("/api/v1/orgs/eve/members").await.expect_problem(StatusCode::NOT_FOUND, "org_not_found");
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_from_where_and_pages() {
    let app = TestApp::spawn().await;
    let (ada, grace, grace_id) = acme_with_grace(&app, "viewer").await;
    ada.patch(&format!("/api/v1/orgs/acme/members/{grace_id}"), json!({ "role": "operator" }))
        .await
        .expect_status(StatusCode::OK);
    grace.patch("/api/v1/me/username", json!({ "username": "hopper" })).await.expect_status(StatusCode::OK);
    app.client().sign_in("grace@example.com", "wrong password!").await.expect_status(StatusCode::UNAUTHORIZED);
    ada.delete(&format!("/api/v1/orgs/acme/members/{grace_id}")).await.expect_status(StatusCode::NO_CONTENT);

    let page = ada.get("/api/v1/orgs/acme/audit").await.expect_status(StatusCode::OK).json();
    let actions: Vec<&str> =
        page["items"].as_array().expect("items").iter().map(|e| e["action"].as_str().expect("action")).collect();
    for expected in
        ["org.created", "org.member_invited", "org.member_joined", "org.member_role_changed", "org.member_removed"]
    {
        assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
    }
    // Only this organization's events: nobody's own account events.
    assert!(actions.iter().all(|a| a.starts_with("org.")), "{actions:?}");
    let change = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "org.member_role_changed")
        .expect("event");
    assert_eq!(change["actor_name"], "ada");
    assert_eq!(change["target"], "grace");
    assert_eq!(change["ip"], "127.0.0.1");
    assert_eq!(change["details"], json!({ "from": "viewer", "to": "operator" }));

    let first = ada.get("/api/v1/orgs/acme/audit?limit=2").await.json();
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    let before = first["next_before"].as_str().expect("more pages");
    let second = ada.get(&format!("/api/v1/orgs/acme/audit?limit=2&before={before}")).await.json();
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    assert!(second["items"][0]["created_at"].as_str() <= first["items"][1]["created_at"].as_str());

    ada.get("/api/v1/orgs/acme/audit?limit=0").await.expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
    ada.get("/api/v1/orgs/acme/audit?limit=many").await.expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn a_members_own_account_events_are_in_their_log_and_never_in_an_organizations() {
    let app = TestApp::spawn().await;
    let (ada, grace, _) = acme_with_grace(&app, "viewer").await;
    app.client().sign_in("grace@example.com", "wrong password!").await.expect_status(StatusCode::UNAUTHORIZED);
    grace
        .put(
            "/api/v1/me/password",
            json!({ "current_password": crate::support::PASSWORD, "new_password": "another password" }),
        )
        .await
        .expect_status(StatusCode::NO_CONTENT);
    let org_log = ada.get("/api/v1/orgs/acme/audit?limit=100").await.json()["items"].clone();
    let leaked: Vec<&Value> = org_log
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| !e["action"].as_str().unwrap_or("").starts_with("org."))
        .collect();
    assert!(leaked.is_empty(), "account events in the organization's log: {leaked:?}");

    let own = grace.get("/api/v1/me/audit?limit=100").await.expect_status(StatusCode::OK).json()["items"].clone();
    let actions: Vec<&str> = own.as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    for expected in ["auth.signup", "auth.email_verified", "auth.login_failed", "account.password_changed"] {
        assert!(actions.contains(&expected), "{expected} missing from grace's own log {actions:?}");
    }
    let failed = own.as_array().expect("items").iter().find(|e| e["action"] == "auth.login_failed").expect("failed");
    assert_eq!(failed["ip"], "127.0.0.1");
    // Nobody else's: ada's sign-up is not in grace's log.
    assert!(own.as_array().expect("items").iter().all(|e| e["actor_name"] == "grace"), "{own}");
    grace.get("/api/v1/me/audit?limit=0").await.expect_problem(StatusCode::BAD_REQUEST, "invalid_query");
}
