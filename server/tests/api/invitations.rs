//! Joining an organization takes the invitee's consent: an invitation by email, which they
//! accept or decline, and which tells the inviter nothing about them until they accept.

use fleetplane::entity::invitations;
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::{Value, json};

use crate::support::{Client, PASSWORD, TestApp};

async fn invite(admin: &Client, org: &str, email: &str, role: &str) -> Value {
    admin
        .post(&format!("/api/v1/orgs/{org}/invitations"), json!({ "email": email, "role": role }))
        .await
        .expect_status(StatusCode::CREATED)
        .json()
}

/// An invitation with its id and timestamps blanked, to compare two answers.
fn shape(mut invitation: Value) -> Value {
    for key in ["id", "email", "created_at", "expires_at"] {
        invitation[key] = json!("…");
    }
    invitation
}

async fn member_names(client: &Client, org: &str) -> Vec<String> {
    let members = client.get(&format!("/api/v1/orgs/{org}/members")).await.expect_status(StatusCode::OK).json();
    members.as_array().expect("members").iter().map(|m| m["username"].as_str().expect("name").to_owned()).collect()
}

#[tokio::test]
async fn an_invitation_adds_nobody_and_reads_the_same_whether_or_not_the_address_has_an_account() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    ada.post("/api/v1/orgs", json!({ "name": "acme" })).await.expect_status(StatusCode::CREATED);
    // bob signs in once more, so that an organization that could read his history would see it.
    app.client().sign_in("bob@example.com", PASSWORD).await.expect_status(StatusCode::OK);

    let to_account = invite(&ada, "acme", "bob@example.com", "operator").await;
    let to_nobody = invite(&ada, "acme", "nobody@example.com", "operator").await;
    assert_eq!(
        shape(to_account.clone()),
        shape(to_nobody.clone()),
        "the answer tells whether the address has an account"
    );
    assert!(to_account.get("user_id").is_none() && to_account.get("username").is_none(), "{to_account}");
    let listed = ada.get("/api/v1/orgs/acme/invitations").await.expect_status(StatusCode::OK).json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert_eq!(shape(listed[0].clone()), shape(listed[1].clone()));

    // Nobody joined; the organization sees nothing of bob.
    assert_eq!(member_names(&ada, "acme").await, ["ada"]);
    bob.get("/api/v1/orgs/acme").await.expect_problem(StatusCode::NOT_FOUND, "org_not_found");
    let log = ada.get("/api/v1/orgs/acme/audit?limit=100").await.json()["items"].clone();
    assert!(log.as_array().expect("items").iter().all(|e| e["actor_name"] != "bob"), "{log}");

    // Both addresses were mailed alike, and bob, who has an account, is also notified.
    for address in ["bob@example.com", "nobody@example.com"] {
        let mail = app.smtp.first_with_subject(address, "ada invited you").await;
        assert_eq!(mail.subject, "ada invited you to acme on Fleetplane");
        assert!(mail.body.contains("/invitations"), "{}", mail.body);
    }
    let notifications = bob.get("/api/v1/notifications").await.expect_status(StatusCode::OK).json();
    assert_eq!(notifications["items"][0]["kind"], "org_invitation", "{notifications}");
    assert_eq!(notifications["items"][0]["link"], "/invitations");
}

#[tokio::test]
async fn the_invitee_accepts_and_joins_with_the_role_they_were_invited_as() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    ada.post("/api/v1/orgs", json!({ "name": "acme", "display_name": "Acme Corp" }))
        .await
        .expect_status(StatusCode::CREATED);
    let sent = invite(&ada, "acme", "Bob@Example.com", "operator").await;

    let received = bob.get("/api/v1/me/invitations").await.expect_status(StatusCode::OK).json();
    assert_eq!(
        received,
        json!([{
            "id": sent["id"], "org": "acme", "org_display_name": "Acme Corp", "role": "operator", "invited_by": "ada",
            "created_at": sent["created_at"], "expires_at": sent["expires_at"],
        }])
    );
    let id = sent["id"].as_str().expect("id");
    // Only the invited address can answer.
    let eve = app.user("eve").await;
    app.assert_unchanged(async {
        eve.post_empty(&format!("/api/v1/me/invitations/{id}/accept"))
            .await
            .expect_problem(StatusCode::NOT_FOUND, "invitation_not_found");
        eve.post_empty(&format!("/api/v1/me/invitations/{id}/decline"))
            .await
            .expect_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    })
    .await;
    assert_eq!(eve.get("/api/v1/me/invitations").await.json(), json!([]));

    let joined = bob.post_empty(&format!("/api/v1/me/invitations/{id}/accept")).await.expect_status(StatusCode::OK);
    assert_eq!((joined.json()["name"].as_str(), joined.json()["role"].as_str()), (Some("acme"), Some("operator")));
    assert_eq!(member_names(&ada, "acme").await, ["ada", "bob"]);
    assert_eq!(bob.get("/api/v1/orgs/acme").await.expect_status(StatusCode::OK).json()["role"], "operator");
    // Answered once: it is no longer open, to bob or to the organization.
    bob.post_empty(&format!("/api/v1/me/invitations/{id}/accept"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    assert_eq!(bob.get("/api/v1/me/invitations").await.json(), json!([]));
    assert_eq!(ada.get("/api/v1/orgs/acme/invitations").await.json(), json!([]));

    let log = ada.get("/api/v1/orgs/acme/audit").await.json()["items"].clone();
    let joined = log.as_array().expect("items").iter().find(|e| e["action"] == "org.member_joined").expect("joined");
    assert_eq!((joined["actor_name"].as_str(), joined["details"]["role"].as_str()), (Some("bob"), Some("operator")));
    let told = ada.get("/api/v1/notifications").await.json();
    assert_eq!(told["items"][0]["kind"], "org_invitation_accepted", "{told}");
}

#[tokio::test]
async fn a_declined_invitation_is_not_reported_to_the_organization() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    ada.post("/api/v1/orgs", json!({ "name": "acme" })).await.expect_status(StatusCode::CREATED);
    let sent = invite(&ada, "acme", "bob@example.com", "viewer").await;
    let before = ada.get("/api/v1/orgs/acme/invitations").await.json();
    let id = sent["id"].as_str().expect("id");

    bob.post_empty(&format!("/api/v1/me/invitations/{id}/decline")).await.expect_status(StatusCode::NO_CONTENT);
    assert_eq!(bob.get("/api/v1/me/invitations").await.json(), json!([]));
    bob.post_empty(&format!("/api/v1/me/invitations/{id}/accept"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    bob.get("/api/v1/orgs/acme").await.expect_problem(StatusCode::NOT_FOUND, "org_not_found");

    // To the organization it reads as before, and nothing in its log says otherwise.
    assert_eq!(ada.get("/api/v1/orgs/acme/invitations").await.json(), before);
    let log = ada.get("/api/v1/orgs/acme/audit").await.json()["items"].clone();
    assert!(log.as_array().expect("items").iter().all(|e| e["actor_name"] != "bob"), "{log}");
    let own = bob.get("/api/v1/me/audit").await.json()["items"].clone();
    assert!(own.as_array().expect("items").iter().any(|e| e["action"] == "account.invitation_declined"), "{own}");
    // A new invitation waits until this one expires or is revoked.
    ada.post("/api/v1/orgs/acme/invitations", json!({ "email": "bob@example.com", "role": "viewer" }))
        .await
        .expect_problem(StatusCode::CONFLICT, "already_invited");
}

#[tokio::test]
async fn a_revoked_or_expired_invitation_cannot_be_accepted() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    ada.post("/api/v1/orgs", json!({ "name": "acme" })).await.expect_status(StatusCode::CREATED);

    let revoked = invite(&ada, "acme", "bob@example.com", "viewer").await;
    let id = revoked["id"].as_str().expect("id");
    ada.delete(&format!("/api/v1/orgs/acme/invitations/{id}")).await.expect_status(StatusCode::NO_CONTENT);
    assert_eq!(bob.get("/api/v1/me/invitations").await.json(), json!([]));
    bob.post_empty(&format!("/api/v1/me/invitations/{id}/accept"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    ada.delete(&format!("/api/v1/orgs/acme/invitations/{id}"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "invitation_not_found");

    // Seven days by default; aged past them, it is refused as expired.
    let sent = invite(&ada, "acme", "bob@example.com", "viewer").await;
    let created: chrono::DateTime<chrono::Utc> = sent["created_at"].as_str().expect("created").parse().expect("time");
    let expires: chrono::DateTime<chrono::Utc> = sent["expires_at"].as_str().expect("expires").parse().expect("time");
    assert_eq!(expires - created, chrono::TimeDelta::days(7));
    let id: uuid::Uuid = sent["id"].as_str().expect("id").parse().expect("uuid");
    let mut record =
        invitations::Entity::find_by_id(id).one(app.db()).await.expect("find").expect("row").into_active_model();
    record.expires_at = Set(chrono::Utc::now() - chrono::TimeDelta::seconds(1));
    record.update(app.db()).await.expect("age");
    assert_eq!(bob.get("/api/v1/me/invitations").await.json(), json!([]));
    app.assert_unchanged(async {
        bob.post_empty(&format!("/api/v1/me/invitations/{id}/accept"))
            .await
            .expect_problem(StatusCode::GONE, "invitation_expired");
    })
    .await;
    bob.get("/api/v1/orgs/acme").await.expect_problem(StatusCode::NOT_FOUND, "org_not_found");
    // Expired, it no longer blocks a new one.
    invite(&ada, "acme", "bob@example.com", "viewer").await;
}

#[tokio::test]
async fn an_invitation_waits_for_an_address_that_signs_up_later() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada").await;
    ada.post("/api/v1/orgs", json!({ "name": "acme" })).await.expect_status(StatusCode::CREATED);
    let sent = invite(&ada, "acme", "newcomer@example.com", "admin").await;
    let mail = app.smtp.first_to("newcomer@example.com").await;
    assert!(mail.body.contains("/signup?email=newcomer%40example.com"), "{}", mail.body);

    let newcomer = app.user("newcomer").await;
    let notifications = newcomer.get("/api/v1/notifications").await.json();
    assert!(notifications.to_string().contains("org_invitation"), "told on verifying: {notifications}");
    let id = sent["id"].as_str().expect("id");
    newcomer.post_empty(&format!("/api/v1/me/invitations/{id}/accept")).await.expect_status(StatusCode::OK);
    assert_eq!(newcomer.get("/api/v1/orgs/acme").await.json()["role"], "admin");
}

#[tokio::test]
async fn invitations_are_rate_limited_per_inviter() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits.invite_per_user = fleetplane::config::Limit::new(2, 3600);
    })
    .await;
    let ada = app.user("ada").await;
    for n in 0..2 {
        invite(&ada, "ada", &format!("person{n}@example.com"), "viewer").await;
    }
    app.assert_unchanged(async {
        ada.post("/api/v1/orgs/ada/invitations", json!({ "email": "person9@example.com", "role": "viewer" }))
            .await
            .expect_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    })
    .await;
}
