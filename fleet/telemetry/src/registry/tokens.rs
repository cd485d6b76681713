//! API tokens: `fleet-telemetry admin create-token` makes one, and the API takes it as a
//! bearer token. A token is stored as its SHA-256 only and shown once. Each has one scope:
//! `read` (bikes, telemetry, quarantine), `write` (also register bikes and issue
//! certificates) or `admin` (also revoke, decommission and manage tokens).

use chrono::{DateTime, Utc};
use fleetplane_common::{db, tokens};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::json;

use super::{Registry, RegistryError, audit, entity::api_tokens, text};

/// Fleet API tokens start with this, so that they are recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "fltk_";

/// The name of the admin token given by its hash in `FLEET_ADMIN_TOKEN_SHA256`: one at a time.
pub const MANAGED_TOKEN_NAME: &str = "managed (FLEET_ADMIN_TOKEN_SHA256)";

/// What a token may do; each scope includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Scope::Read, Scope::Write, Scope::Admin].into_iter().find(|scope| scope.as_str() == text)
    }

    /// Whether a token with this scope may do what `needed` allows.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// A token as listed: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scope: Scope,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TokenInfo {
    fn from_row(row: api_tokens::Model) -> Result<Self, RegistryError> {
        let scope = Scope::parse(&row.scope)
            .ok_or_else(|| sea_orm::DbErr::Custom(format!("stored token scope `{}`", row.scope)))?;
        Ok(Self {
            id: row.id,
            name: row.name,
            prefix: row.prefix,
            scope,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

impl Registry {
    /// Creates a token named `name` with `scope`; returns it (the only time it is seen) and
    /// its listing.
    pub async fn create_token(
        &self,
        actor: &str,
        name: &str,
        scope: Scope,
        now: DateTime<Utc>,
    ) -> Result<(String, TokenInfo), RegistryError> {
        let name = text("name", name, super::MAX_TEXT)?;
        let token = tokens::generate(TOKEN_PREFIX);
        let id = tokens::hash(&token)[..16].to_owned();
        let tx = db::begin_write(self.database()).await?;
        let row = api_tokens::ActiveModel {
            id: Set(id.clone()),
            name: Set(name.clone()),
            token_hash: Set(tokens::hash(&token)),
            prefix: Set(token[..TOKEN_PREFIX.len() + 6].to_owned()),
            scope: Set(scope.as_str().to_owned()),
            created_at: Set(now),
            revoked_at: Set(None),
        }
        .insert(&tx)
        .await?;
        audit(&tx, now, actor, "token.create", None, json!({ "id": id, "name": name, "scope": scope.as_str() }))
            .await?;
        tx.commit().await?;
        Ok((token, TokenInfo::from_row(row)?))
    }

    /// Makes the admin token whose SHA-256 is `hash` (`FLEET_ADMIN_TOKEN_SHA256`) the one managed
    /// token: adds it if it is new, and revokes a managed token of an earlier hash, so that
    /// changing the setting rotates the token. A hash that was revoked stays revoked. Returns
    /// whether anything changed.
    pub async fn ensure_managed_token(&self, hash: &str, now: DateTime<Utc>) -> Result<bool, RegistryError> {
        let actor = "FLEET_ADMIN_TOKEN_SHA256";
        let tx = db::begin_write(self.database()).await?;
        let managed =
            api_tokens::Entity::find().filter(api_tokens::Column::Name.eq(MANAGED_TOKEN_NAME)).all(&tx).await?;
        let mut changed = false;
        for old in managed.iter().filter(|row| row.token_hash != hash && row.revoked_at.is_none()) {
            let mut row: api_tokens::ActiveModel = old.clone().into();
            row.revoked_at = Set(Some(now));
            row.update(&tx).await?;
            audit(&tx, now, actor, "token.revoke", None, json!({ "id": old.id, "rotated": true })).await?;
            changed = true;
        }
        let known = api_tokens::Entity::find().filter(api_tokens::Column::TokenHash.eq(hash)).one(&tx).await?;
        if known.is_none() {
            let id = hash[..16].to_owned();
            api_tokens::ActiveModel {
                id: Set(id.clone()),
                name: Set(MANAGED_TOKEN_NAME.to_owned()),
                token_hash: Set(hash.to_owned()),
                // The token itself is never seen here: only the prefix every token has.
                prefix: Set(TOKEN_PREFIX.to_owned()),
                scope: Set(Scope::Admin.as_str().to_owned()),
                created_at: Set(now),
                revoked_at: Set(None),
            }
            .insert(&tx)
            .await?;
            let details = json!({ "id": id, "name": MANAGED_TOKEN_NAME, "scope": Scope::Admin.as_str() });
            audit(&tx, now, actor, "token.create", None, details).await?;
            changed = true;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// The token `token` is, if it is one of ours and not revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>, RegistryError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = api_tokens::Entity::find()
            .filter(api_tokens::Column::TokenHash.eq(tokens::hash(token)))
            .filter(api_tokens::Column::RevokedAt.is_null())
            .one(self.database())
            .await?;
        row.map(TokenInfo::from_row).transpose()
    }

    /// Every token, newest first.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, RegistryError> {
        api_tokens::Entity::find()
            .order_by_desc(api_tokens::Column::CreatedAt)
            .all(self.database())
            .await?
            .into_iter()
            .map(TokenInfo::from_row)
            .collect()
    }

    pub async fn revoke_token(&self, actor: &str, id: &str, now: DateTime<Utc>) -> Result<TokenInfo, RegistryError> {
        let tx = db::begin_write(self.database()).await?;
        let row = api_tokens::Entity::find_by_id(id)
            .one(&tx)
            .await?
            .ok_or_else(|| RegistryError::TokenNotFound(id.to_owned()))?;
        if row.revoked_at.is_some() {
            return Err(RegistryError::AlreadyRevoked(format!("token {id}")));
        }
        let mut row: api_tokens::ActiveModel = row.into();
        row.revoked_at = Set(Some(now));
        let row = row.update(&tx).await?;
        audit(&tx, now, actor, "token.revoke", None, json!({ "id": id })).await?;
        tx.commit().await?;
        TokenInfo::from_row(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::fixture;

    #[tokio::test]
    async fn a_token_is_shown_once_stored_hashed_and_ends_when_revoked() {
        let f = fixture().await;
        let (token, info) =
            f.registry.create_token("cli", "  factory line 3 ", Scope::Write, Utc::now()).await.expect("created");
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() > 40);
        assert_eq!(info.name, "factory line 3");
        assert!(token.starts_with(&info.prefix));
        let found = f.registry.authenticate(&token).await.expect("ok").expect("known");
        assert_eq!((found.id.as_str(), found.scope), (info.id.as_str(), Scope::Write));
        // Only the hash is stored.
        let listed = f.registry.tokens().await.expect("listed");
        assert_eq!(listed, vec![info.clone()]);
        assert!(f.registry.authenticate(&format!("{token}x")).await.expect("ok").is_none());
        assert!(f.registry.authenticate("fpat_something").await.expect("ok").is_none());

        f.registry.revoke_token("admin", &info.id, Utc::now()).await.expect("revoked");
        assert!(f.registry.authenticate(&token).await.expect("ok").is_none(), "a revoked token no longer works");
        let again = f.registry.revoke_token("admin", &info.id, Utc::now()).await.unwrap_err();
        assert!(matches!(again, RegistryError::AlreadyRevoked(_)), "{again}");
        let missing = f.registry.revoke_token("admin", "nope", Utc::now()).await.unwrap_err();
        assert!(matches!(missing, RegistryError::TokenNotFound(_)), "{missing}");
        let actions: Vec<String> =
            f.registry.audit_events(None, None, 10).await.expect("audit").items.into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["token.revoke", "token.create"]);
        let bad = f.registry.create_token("cli", "", Scope::Read, Utc::now()).await.unwrap_err();
        assert!(matches!(bad, RegistryError::Invalid { field: "name", .. }), "{bad}");
    }

    #[tokio::test]
    async fn the_managed_token_is_added_once_and_rotated_when_its_hash_changes() {
        let f = fixture().await;
        let first = tokens::generate(TOKEN_PREFIX);
        assert!(f.registry.ensure_managed_token(&tokens::hash(&first), Utc::now()).await.expect("added"));
        assert!(!f.registry.ensure_managed_token(&tokens::hash(&first), Utc::now()).await.expect("same"));
        let found = f.registry.authenticate(&first).await.expect("ok").expect("the managed token works");
        assert_eq!((found.name.as_str(), found.scope), (MANAGED_TOKEN_NAME, Scope::Admin));

        let second = tokens::generate(TOKEN_PREFIX);
        assert!(f.registry.ensure_managed_token(&tokens::hash(&second), Utc::now()).await.expect("rotated"));
        assert!(f.registry.authenticate(&first).await.expect("ok").is_none(), "the earlier one is revoked");
        assert!(f.registry.authenticate(&second).await.expect("ok").is_some());
        // An operator's revocation of the managed token is not undone by a restart.
        let id = f.registry.authenticate(&second).await.expect("ok").expect("known").id;
        f.registry.revoke_token("admin", &id, Utc::now()).await.expect("revoked");
        assert!(!f.registry.ensure_managed_token(&tokens::hash(&second), Utc::now()).await.expect("ok"));
        assert!(f.registry.authenticate(&second).await.expect("ok").is_none());
        let actions: Vec<String> =
            f.registry.audit_events(None, None, 10).await.expect("audit").items.into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["token.revoke", "token.create", "token.revoke", "token.create"]);
    }

    #[test]
    fn scopes_include_the_ones_below() {
        assert!(Scope::Admin.allows(Scope::Write) && Scope::Write.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Write) && !Scope::Write.allows(Scope::Admin));
        for scope in [Scope::Read, Scope::Write, Scope::Admin] {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("root"), None);
    }
}
