use std::time::{Duration, SystemTime};

use fleetplane_common::{
    db::testing::fresh_database_url,
    secrets::{KeySettings, Keyring},
};

use super::*;
use crate::pki::DEFAULT_VALIDITY;

pub(crate) struct Fixture {
    pub(crate) registry: Registry,
    keyring: Keyring,
    _dir: tempfile::TempDir,
}

pub(crate) async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database_url(dir.path(), "registry").await;
    let registry = Registry::open(&url, 4).await.expect("registry opens");
    let keyring = Keyring::load(&KeySettings { variable: "TEST_KEYS", keys: None, file: dir.path().join("keys") })
        .expect("keyring");
    Fixture { registry, keyring, _dir: dir }
}

fn bike(serial: &str) -> NewBike {
    NewBike {
        serial: serial.into(),
        model: "Cargo 2".into(),
        firmware_version: "1.4.2".into(),
        display_name: Some("  Courier 7 ".into()),
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[tokio::test]
async fn a_bike_is_registered_listed_and_got_and_each_change_is_audited() {
    let f = fixture().await;
    let registered = f.registry.register("token:factory", &bike("SN-0001"), Utc::now()).await.expect("registered");
    assert!(registered.device_id.as_str().starts_with("bike-"));
    assert_eq!(registered.display_name.as_deref(), Some("Courier 7"), "text is trimmed");
    assert_eq!(f.registry.bike(&registered.device_id).await.expect("got"), registered);

    let page = f.registry.bikes(&BikeFilter::default(), None, 10).await.expect("listed");
    assert_eq!(page.items, vec![registered.clone()]);
    assert!(page.next.is_none());

    let trail = f.registry.audit_events(Some(&registered.device_id), None, 10).await.expect("audit");
    assert_eq!(trail.items.len(), 1);
    assert_eq!(trail.items[0].action, "bike.register");
    assert_eq!(trail.items[0].actor, "token:factory");
    assert_eq!(trail.items[0].details.as_ref().expect("details")["serial"], "SN-0001");
}

#[tokio::test]
async fn a_serial_is_registered_once_and_bad_fields_are_named() {
    let f = fixture().await;
    f.registry.register("cli", &bike("SN-1"), Utc::now()).await.expect("registered");
    let again = f.registry.register("cli", &bike("SN-1"), Utc::now()).await.unwrap_err();
    assert!(matches!(again, RegistryError::SerialTaken(ref s) if s == "SN-1"), "{again}");

    let cases: [(NewBike, &str); 6] = [
        (NewBike { serial: " ".into(), ..bike("") }, "serial"),
        (NewBike { serial: "x".repeat(65), ..bike("") }, "serial"),
        (NewBike { model: "a\u{7}b".into(), ..bike("SN-2") }, "model"),
        (NewBike { firmware_version: "1.0 beta".into(), ..bike("SN-2") }, "firmware_version"),
        (NewBike { firmware_version: String::new(), ..bike("SN-2") }, "firmware_version"),
        (NewBike { display_name: Some("n".repeat(101)), ..bike("SN-2") }, "display_name"),
    ];
    for (request, field) in cases {
        match f.registry.register("cli", &request, Utc::now()).await {
            Err(RegistryError::Invalid { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{request:?}: expected an error on {field}, got {other:?}"),
        }
    }
    // Nothing was written by the refused requests.
    assert_eq!(f.registry.bikes_in_service().await.expect("count"), 1);
    assert_eq!(f.registry.audit_events(None, None, 50).await.expect("audit").items.len(), 1);
}

#[tokio::test]
async fn listings_are_paged_in_device_id_order_and_filtered() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut new = bike(&format!("SN-{i}"));
        if i % 2 == 0 {
            new.model = "City".into();
        }
        if i == 3 {
            new.firmware_version = "2.0.0".into();
        }
        ids.push(f.registry.register("cli", &new, Utc::now()).await.expect("registered").device_id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = f.registry.bikes(&BikeFilter::default(), after.as_deref(), 3).await.expect("page");
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|b| b.device_id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every bike once, in order");

    let city = BikeFilter { model: Some("City".into()), ..BikeFilter::default() };
    assert_eq!(f.registry.bikes(&city, None, 50).await.expect("city").items.len(), 4);
    let v2 = BikeFilter { firmware_version: Some("2.0.0".into()), ..BikeFilter::default() };
    let v2 = f.registry.bikes(&v2, None, 50).await.expect("v2").items;
    assert_eq!(v2.len(), 1);
    assert_eq!(v2[0].serial, "SN-3");
}

#[tokio::test]
async fn the_fleet_ca_is_created_once_and_opens_again_under_the_same_keys() {
    let f = fixture().await;
    let first = f.registry.authority(&f.keyring, now()).await.expect("created");
    let again = f.registry.authority(&f.keyring, now()).await.expect("opened");
    assert_eq!(first.chain_pem(), again.chain_pem());

    let dir = tempfile::tempdir().expect("tempdir");
    let other = Keyring::load(&KeySettings { variable: "TEST_KEYS", keys: None, file: dir.path().join("other") })
        .expect("keys");
    let refused = f.registry.authority(&other, now()).await.err().expect("other keys cannot open it");
    assert!(matches!(refused, RegistryError::Pki(PkiError::Sealed(_))), "{refused}");
}

#[tokio::test]
async fn certificates_are_issued_listed_and_revoked_into_the_next_crl() {
    let f = fixture().await;
    let ca = f.registry.authority(&f.keyring, now()).await.expect("ca");
    let bike = f.registry.register("cli", &bike("SN-9"), Utc::now()).await.expect("registered");
    assert_eq!(f.registry.standings(now()).await.expect("standings")[&bike.device_id], Standing::Uncertified);

    let first = f
        .registry
        .issue("cli", &ca, &bike.device_id, Request::Generate, DEFAULT_VALIDITY, now())
        .await
        .expect("issued");
    let bundle = first.bundle.expect("a generated key comes back once");
    assert!(bundle.key_pem.contains("PRIVATE KEY"));
    assert_eq!(first.certificate.source, Source::Generated);
    let second = f
        .registry
        .issue("cli", &ca, &bike.device_id, Request::Generate, DEFAULT_VALIDITY, now() + Duration::from_secs(1))
        .await
        .expect("issued");
    let listed = f.registry.certificates(&bike.device_id).await.expect("listed");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].serial, second.certificate.serial, "newest first");
    assert_eq!(f.registry.standings(now()).await.expect("standings")[&bike.device_id], Standing::Admitted);

    let (revoked, crl) = f
        .registry
        .revoke("admin", &first.certificate.serial.to_uppercase(), Reason::KeyCompromise, now())
        .await
        .expect("revoked");
    assert_eq!(revoked.revoked.map(|(_, reason)| reason), Some(Reason::KeyCompromise));
    assert_eq!(crl.revoked.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(), [first.certificate.serial.as_str()]);
    // One valid certificate left: still admitted.
    assert_eq!(f.registry.standings(now()).await.expect("standings")[&bike.device_id], Standing::Admitted);

    let again = f.registry.revoke("admin", &first.certificate.serial, Reason::Superseded, now()).await.unwrap_err();
    assert!(matches!(again, RegistryError::AlreadyRevoked(_)), "{again}");
    let missing = f.registry.revoke("admin", "abcdef", Reason::Superseded, now()).await.unwrap_err();
    assert!(matches!(missing, RegistryError::CertificateNotFound(_)), "{missing}");

    let (_, crl2) =
        f.registry.revoke("admin", &second.certificate.serial, Reason::Unspecified, now()).await.expect("revoked");
    assert!(crl2.number > crl.number, "CRL numbers grow");
    assert_eq!(crl2.revoked.len(), 2);
    assert_eq!(f.registry.standings(now()).await.expect("standings")[&bike.device_id], Standing::Revoked);
    // The CRL the CA signs from it lists both.
    ca.crl(&crl2.revoked, crl2.number, now()).expect("a CRL");

    let actions: Vec<String> = f
        .registry
        .audit_events(Some(&bike.device_id), None, 50)
        .await
        .expect("audit")
        .items
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["certificate.revoke", "certificate.revoke", "certificate.issue", "certificate.issue", "bike.register"]
    );
}

#[tokio::test]
async fn a_bad_csr_or_validity_is_refused_and_records_nothing() {
    let f = fixture().await;
    let ca = f.registry.authority(&f.keyring, now()).await.expect("ca");
    let bike = f.registry.register("cli", &bike("SN-5"), Utc::now()).await.expect("registered");
    let bad = f
        .registry
        .issue(
            "cli",
            &ca,
            &bike.device_id,
            Request::Csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
            DEFAULT_VALIDITY,
            now(),
        )
        .await
        .err()
        .expect("refused");
    assert!(matches!(bad, RegistryError::Pki(PkiError::InvalidCsr(_))), "{bad}");
    let short = f
        .registry
        .issue("cli", &ca, &bike.device_id, Request::Generate, Duration::from_secs(60), now())
        .await
        .err()
        .expect("refused");
    assert!(matches!(short, RegistryError::Pki(PkiError::InvalidValidity)), "{short}");
    let unknown = DeviceId::parse("bike-unknown").expect("id");
    let missing = f
        .registry
        .issue("cli", &ca, &unknown, Request::Generate, DEFAULT_VALIDITY, now())
        .await
        .err()
        .expect("refused");
    assert!(matches!(missing, RegistryError::BikeNotFound(_)), "{missing}");
    assert!(f.registry.certificates(&bike.device_id).await.expect("listed").is_empty());
    assert_eq!(f.registry.audit_events(None, None, 50).await.expect("audit").items.len(), 1, "only the registration");
}

#[tokio::test]
async fn decommissioning_revokes_what_the_bike_holds_and_hides_it() {
    let f = fixture().await;
    let ca = f.registry.authority(&f.keyring, now()).await.expect("ca");
    let bike = f.registry.register("cli", &bike("SN-7"), Utc::now()).await.expect("registered");
    let issued = f
        .registry
        .issue("cli", &ca, &bike.device_id, Request::Generate, DEFAULT_VALIDITY, now())
        .await
        .expect("issued");

    let (gone, crl) = f.registry.decommission("admin", &bike.device_id, now()).await.expect("decommissioned");
    assert!(gone.decommissioned_at.is_some());
    let crl = crl.expect("a certificate was revoked");
    assert_eq!(crl.revoked[0].serial, issued.certificate.serial);
    assert_eq!(crl.revoked[0].reason, Reason::CessationOfOperation);
    assert_eq!(f.registry.standings(now()).await.expect("standings")[&bike.device_id], Standing::Decommissioned);

    assert!(f.registry.bikes(&BikeFilter::default(), None, 50).await.expect("listed").items.is_empty());
    let all = BikeFilter { decommissioned: true, ..BikeFilter::default() };
    assert_eq!(f.registry.bikes(&all, None, 50).await.expect("listed").items.len(), 1);

    let twice = f.registry.decommission("admin", &bike.device_id, now()).await.unwrap_err();
    assert!(matches!(twice, RegistryError::Decommissioned(_)), "{twice}");
    let issue = f
        .registry
        .issue("cli", &ca, &bike.device_id, Request::Generate, DEFAULT_VALIDITY, now())
        .await
        .err()
        .expect("refused");
    assert!(matches!(issue, RegistryError::Decommissioned(_)), "{issue}");
}
