//! Outgoing mail through an outbox table.
//!
//! A message is inserted in the same transaction as the change that causes it (a sign-up, a
//! resend), so it is never lost and never sent for a change that rolled back. A dispatcher
//! task delivers due messages over SMTP, retrying with backoff; with no SMTP configured it
//! writes them to the log and keeps them for the loopback-only dev outbox.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

use crate::{config::Config, entity::outbound_emails};

/// Delivery attempts before a message is marked `failed`.
const MAX_ATTEMPTS: i32 = 8;
/// A `sending` claim older than this is assumed dead (the process stopped) and retried.
const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// The dispatcher looks for due messages this often even when nothing wakes it.
const POLL: Duration = Duration::from_secs(15);
const BATCH: u64 = 20;

pub(crate) mod status {
    pub const PENDING: &str = "pending";
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    pub const LOGGED: &str = "logged";
    pub const FAILED: &str = "failed";
    /// Handed to the SMTP server, or (with none configured) written to the log.
    pub const DELIVERED: [&str; 2] = [SENT, LOGGED];
}

pub struct Mailer {
    db: DatabaseConnection,
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    public_url: Url,
    wake: Notify,
}

/// A message to queue.
pub struct Email {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Mailer {
    pub fn new(config: &Config, db: DatabaseConnection) -> anyhow::Result<Self> {
        let transport = match &config.smtp_url {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    // lettre's error may quote the URL, and the URL may hold a password.
                    .map_err(|_| anyhow::anyhow!("FLEETPLANE_SMTP_URL is not a usable SMTP URL"))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
            None => None,
        };
        let from = config.mail_from.parse().context("FLEETPLANE_MAIL_FROM")?;
        Ok(Self { db, transport, from, public_url: config.public_url.clone(), wake: Notify::new() })
    }

    /// With no SMTP server configured, mail is kept for the dev outbox page.
    pub fn dev_outbox_enabled(&self) -> bool {
        self.transport.is_none()
    }

    /// An absolute link to `path` (with query) on the public URL, for emails.
    pub fn link(&self, path: &str) -> String {
        self.public_url.join(path).map_or_else(|_| path.to_owned(), String::from)
    }

    /// Queues `email` inside the caller's transaction; call [`Mailer::wake`] after commit.
    pub async fn enqueue(&self, conn: &impl ConnectionTrait, email: Email) -> Result<(), DbErr> {
        let now = Utc::now();
        outbound_emails::ActiveModel {
            id: Set(Uuid::now_v7()),
            to_address: Set(email.to),
            subject: Set(email.subject),
            body_text: Set(Some(email.body)),
            status: Set(status::PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(None),
            created_at: Set(now),
            sent_at: Set(None),
        }
        .insert(conn)
        .await
        .map(drop)
    }

    /// Tells the dispatcher that new mail is waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Recent mail written to the log instead of sent, newest first.
    pub async fn dev_outbox(&self, limit: u64) -> Result<Vec<outbound_emails::Model>, DbErr> {
        outbound_emails::Entity::find()
            .filter(outbound_emails::Column::Status.eq(status::LOGGED))
            .order_by_desc(outbound_emails::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
    }

    /// Delivers due mail until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "mail dispatcher could not read the outbox");
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn deliver_due(&self) -> Result<(), DbErr> {
        loop {
            let now = Utc::now();
            let due = outbound_emails::Entity::find()
                .filter(outbound_emails::Column::Status.is_in([status::PENDING, status::SENDING]))
                .filter(outbound_emails::Column::NextAttemptAt.lte(now))
                .order_by_asc(outbound_emails::Column::Id)
                .limit(BATCH)
                .all(&self.db)
                .await?;
            if due.is_empty() {
                return Ok(());
            }
            for message in due {
                if self.claim(&message, now).await? {
                    self.deliver(message).await?;
                }
            }
        }
    }

    /// Marks `message` as being sent by us. The update only matches the row as we read it, so
    /// when two dispatchers (two replicas) read the same row, exactly one claim succeeds.
    async fn claim(&self, message: &outbound_emails::Model, now: DateTime<Utc>) -> Result<bool, DbErr> {
        let lease_end = now + chrono::Duration::from_std(CLAIM_LEASE).unwrap_or_default();
        let result = outbound_emails::Entity::update_many()
            .col_expr(outbound_emails::Column::Status, Expr::value(status::SENDING))
            .col_expr(outbound_emails::Column::NextAttemptAt, Expr::value(lease_end))
            .col_expr(outbound_emails::Column::Attempts, Expr::value(message.attempts + 1))
            .filter(outbound_emails::Column::Id.eq(message.id))
            .filter(outbound_emails::Column::Status.eq(&message.status))
            .filter(outbound_emails::Column::Attempts.eq(message.attempts))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    async fn deliver(&self, message: outbound_emails::Model) -> Result<(), DbErr> {
        let attempts = message.attempts + 1;
        let body = message.body_text.clone().unwrap_or_default();
        let mut update = outbound_emails::ActiveModel { id: Set(message.id), ..Default::default() };
        match &self.transport {
            None => {
                tracing::info!(to = %message.to_address, subject = %message.subject, body = %body,
                    "no SMTP server configured (FLEETPLANE_SMTP_URL); this email was not sent");
                update.status = Set(status::LOGGED.to_owned());
                update.sent_at = Set(Some(Utc::now()));
            }
            Some(transport) => match self.send(transport, &message, body).await {
                Ok(()) => {
                    tracing::info!(id = %message.id, "email delivered");
                    update.status = Set(status::SENT.to_owned());
                    update.sent_at = Set(Some(Utc::now()));
                    update.body_text = Set(None);
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    let failed = attempts >= MAX_ATTEMPTS;
                    tracing::warn!(id = %message.id, attempts, error = %error, gave_up = failed, "email delivery failed");
                    update.status = Set(if failed { status::FAILED } else { status::PENDING }.to_owned());
                    update.next_attempt_at = Set(Utc::now() + retry_delay(attempts));
                    update.last_error = Set(Some(error));
                }
            },
        }
        update.update(&self.db).await.map(drop)
    }

    async fn send(
        &self,
        transport: &AsyncSmtpTransport<Tokio1Executor>,
        message: &outbound_emails::Model,
        body: String,
    ) -> anyhow::Result<()> {
        let to: Mailbox = message.to_address.parse().context("recipient address")?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&message.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("building the message")?;
        transport.send(email).await.context("SMTP")?;
        Ok(())
    }
}

/// 30 s after the first failure, doubling to at most an hour.
fn retry_delay(attempts: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(7);
    chrono::Duration::seconds((30_i64 << exponent).min(3600))
}

/// The verification email sent at sign-up and on resend.
pub fn verification_email(mailer: &Mailer, to: &str, username: &str, token: &str) -> Email {
    let link = mailer.link(&format!("/verify-email?token={token}"));
    Email {
        to: to.to_owned(),
        subject: "Verify your email for Fleetplane".to_owned(),
        body: format!(
            "Hello {username},\n\n\
             Confirm this email address to finish setting up your Fleetplane account:\n\n\
             {link}\n\n\
             The link works once and expires in 24 hours. If you did not sign up, ignore this email.\n"
        ),
    }
}

/// Sent instead of a verification link when someone signs up with an address that already has
/// an account: the sign-up answers as for a new address, so only the owner learns of it.
pub fn signup_attempt_email(mailer: &Mailer, to: &str, username: &str) -> Email {
    let login = mailer.link("/login");
    let reset = mailer.link("/forgot-password");
    Email {
        to: to.to_owned(),
        subject: "Someone tried to sign up for Fleetplane with your email".to_owned(),
        body: format!(
            "Hello {username},\n\n\
             Someone just tried to create a Fleetplane account with this email address. It already \
             belongs to your account, so no new account was made and nothing about yours changed.\n\n\
             If it was you, sign in instead:\n\n{login}\n\n\
             Forgot your password? Set a new one here:\n\n{reset}\n\n\
             If it was not you, you can ignore this email.\n"
        ),
    }
}

/// The "forgot password" link.
pub fn password_reset_email(mailer: &Mailer, to: &str, username: &str, token: &str) -> Email {
    let link = mailer.link(&format!("/reset-password?token={token}"));
    Email {
        to: to.to_owned(),
        subject: "Reset your Fleetplane password".to_owned(),
        body: format!(
            "Hello {username},\n\n\
             Someone (we hope you) asked to reset the password of your Fleetplane account. Choose a new \
             password here:\n\n{link}\n\n\
             The link works once and expires in 1 hour. Setting a new password signs you out everywhere. \
             If you did not ask for this, ignore this email: your password stays as it is.\n"
        ),
    }
}

/// An invitation to join an organization, to an address that may or may not have an account.
pub fn invitation_email(mailer: &Mailer, to: &str, inviter: &str, org: &str, role: &str, expires: &str) -> Email {
    let invitations = mailer.link("/invitations");
    let signup = mailer
        .link(&format!("/signup?email={}", url::form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>()));
    Email {
        to: to.to_owned(),
        subject: format!("{inviter} invited you to {org} on Fleetplane"),
        body: format!(
            "Hello,\n\n\
             {inviter} invited you to join the organization {org} on Fleetplane as {role}.\n\n\
             To accept or decline, sign in and open your invitations:\n\n{invitations}\n\n\
             No Fleetplane account with this address yet? Create one with this address, and the invitation \
             will be waiting:\n\n{signup}\n\n\
             The invitation expires on {expires}. If you do not know {inviter}, ignore this email: \
             nothing happens unless you accept.\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_delay(1).num_seconds(), 30);
        assert_eq!(retry_delay(2).num_seconds(), 60);
        assert_eq!(retry_delay(5).num_seconds(), 480);
        assert_eq!(retry_delay(8).num_seconds(), 3600);
        assert_eq!(retry_delay(100).num_seconds(), 3600);
    }
}
