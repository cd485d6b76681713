//! Storing a job's output: every line once, numbered after the run's earlier lines, never
//! renumbered.
//!
//! The log's position is read before the first line is numbered, and a batch is stored with
//! `ON CONFLICT DO NOTHING`, so that a batch written again (its first write committed, but the
//! answer was lost) cannot fail on its own lines. When the database does not answer, the
//! recorder tries again with back-off, for as long as the configured patience; the job waits
//! meanwhile (its output channel is bounded), which costs it nothing but time. Lines it could
//! not store in that time are given up, counted (`fleetplane_run_log_lines_lost_total`), and
//! leave a gap in the numbering; the run then says its log is incomplete.

use std::time::Duration;

use chrono::Utc;
use fleetplane_executor::LogLine;
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use sea_orm::{DbErr, EntityTrait, Set, sea_query::OnConflict};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::JobResult;
use crate::{bus::Signal, entity::run_logs, state::AppState};

/// Most log lines stored in one insert.
const MAX_BATCH: usize = 200;

/// How long the recorder keeps trying to store lines before it gives them up.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// The first wait after a failure; each next one is twice as long, up to `longest`.
    pub first: Duration,
    pub longest: Duration,
    /// How long one batch (or the log's position) may keep failing before it is given up.
    pub total: Duration,
}

impl Patience {
    pub fn new(total: Duration) -> Self {
        Self { first: Duration::from_millis(50), longest: Duration::from_secs(5), total }
    }
}

/// Run log lines that could not be stored, for `/metrics`.
#[derive(Clone, Default)]
pub struct LogHealth {
    write_failures: Counter,
    lines_lost: Counter,
}

impl LogHealth {
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "run_log_write_failures",
            "Failed attempts to store run log lines (each is tried again)",
            self.write_failures.clone(),
        );
        registry.register(
            "run_log_lines_lost",
            "Run log lines given up after the database failed for longer than runs.log_patience_secs",
            self.lines_lost.clone(),
        );
    }
}

/// Tries `attempt` until it succeeds or `patience` runs out; with `hurry`, once only.
async fn with_retries<T, F: Future<Output = Result<T, DbErr>>>(
    patience: Patience,
    hurry: bool,
    health: &LogHealth,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, DbErr> {
    let started = tokio::time::Instant::now();
    let mut wait = patience.first;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        health.write_failures.inc();
        let left = patience.total.saturating_sub(started.elapsed());
        if hurry || left.is_zero() {
            return Err(error);
        }
        tracing::warn!(error = %error, retry_in = ?wait.min(left), "{what}; trying again");
        tokio::time::sleep(wait.min(left)).await;
        wait = (wait * 2).min(patience.longest);
    }
}

/// Stores a job's lines in order, in small batches, with secrets replaced; reads the marker
/// lines instead of storing them as they are (the outputs line can hold sensitive values).
/// Lines that could not be stored are counted in the result's `lost`.
pub(super) async fn record(
    state: AppState,
    run: Uuid,
    attempt: i32,
    secrets: Vec<String>,
    mut lines: mpsc::Receiver<LogLine>,
) -> JobResult {
    let patience = Patience::new(Duration::from_secs(state.config.runs.log_patience_secs));
    let health = &state.log_health;
    let mut result = JobResult::default();
    // Unknown until read: numbering from a guess would collide with the earlier lines.
    let mut next_seq = None;
    // After lines were given up, the database is not waited for again until it answers: the
    // job's output is not held back for minutes per batch.
    let mut hurry = false;
    // Each line is stored as soon as it arrives; lines that arrive while a write is under way
    // go together in the next one. So a quiet job's line shows at once, and a chatty one costs
    // one insert per burst rather than per line.
    let mut batch: Vec<(&'static str, String, chrono::DateTime<Utc>)> = Vec::new();
    while let Some(first) = lines.recv().await {
        let mut next = Some(first);
        while let Some(line) = next {
            let (stream, text) = result.read(line, &secrets);
            batch.push((stream, text, Utc::now()));
            next = if batch.len() < MAX_BATCH { lines.try_recv().ok() } else { None };
        }
        if next_seq.is_none() {
            let position =
                with_retries(patience, hurry, health, "cannot read the run's log position", || last_seq(&state, run));
            match position.await {
                Ok(last) => next_seq = Some(last + 1),
                Err(e) => {
                    tracing::error!(run = %run, error = %e, lines = batch.len(), "cannot read the run's log position; its lines are given up");
                    lose(&mut result, health, batch.len());
                    batch.clear();
                    hurry = true;
                    continue;
                }
            }
        }
        let first_seq = next_seq.unwrap_or(1);
        let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        next_seq = Some(first_seq + count);
        let rows = || {
            batch.iter().zip(first_seq..).map(|((stream, text, at), seq)| run_logs::ActiveModel {
                run_id: Set(run),
                seq: Set(seq),
                attempt: Set(attempt),
                stream: Set((*stream).to_owned()),
                text: Set(text.clone()),
                at: Set(*at),
            })
        };
        let stored = with_retries(patience, hurry, health, "cannot store run log lines", || insert(&state, rows()));
        match stored.await {
            Ok(()) => {
                hurry = false;
                state.bus.publish(Signal::Logs(run));
            }
            Err(e) => {
                tracing::error!(run = %run, error = %e, lines = batch.len(), first = first_seq, "cannot store run log lines; they are given up");
                lose(&mut result, health, batch.len());
                hurry = true;
            }
        }
        batch.clear();
    }
    if result.lost > 0 {
        say_incomplete(&state, run, attempt, next_seq, result.lost, patience).await;
    }
    result
}

fn lose(result: &mut JobResult, health: &LogHealth, count: usize) {
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    result.lost += count;
    health.lines_lost.inc_by(count);
}

/// Ends the attempt's log with a note that lines are missing, when the database lets it.
async fn say_incomplete(
    state: &AppState,
    run: Uuid,
    attempt: i32,
    next_seq: Option<i64>,
    lost: u64,
    patience: Patience,
) {
    let health = &state.log_health;
    let seq = match next_seq {
        Some(seq) => Ok(seq),
        None => with_retries(patience, false, health, "cannot read the run's log position", || last_seq(state, run))
            .await
            .map(|last| last + 1),
    };
    let note = || run_logs::ActiveModel {
        run_id: Set(run),
        seq: Set(*seq.as_ref().unwrap_or(&1)),
        attempt: Set(attempt),
        stream: Set("system".into()),
        text: Set(format!("{lost} lines of this attempt's output could not be stored: this log is incomplete.")),
        at: Set(Utc::now()),
    };
    let stored = match &seq {
        Ok(_) => with_retries(patience, false, health, "cannot store the log's note", || insert(state, [note()])).await,
        Err(e) => Err(DbErr::Custom(e.to_string())),
    };
    match stored {
        Ok(()) => state.bus.publish(Signal::Logs(run)),
        Err(e) => tracing::error!(run = %run, error = %e, "cannot say in the run's log that it is incomplete"),
    }
}

/// Stores `rows`, passing over any stored already (a retried batch whose first write landed).
async fn insert(state: &AppState, rows: impl IntoIterator<Item = run_logs::ActiveModel>) -> Result<(), DbErr> {
    let on_conflict = OnConflict::columns([run_logs::Column::RunId, run_logs::Column::Seq]).do_nothing().to_owned();
    run_logs::Entity::insert_many(rows).on_conflict(on_conflict).exec_without_returning(&state.db).await?;
    Ok(())
}

async fn last_seq(state: &AppState, run: Uuid) -> Result<i64, DbErr> {
    crate::queue::last_log_seq(&state.db, run).await
}
