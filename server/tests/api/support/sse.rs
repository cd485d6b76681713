//! A Server-Sent Events client for tests: reads `id`, `event` and `data` fields and comment
//! lines as the specification describes, from a streaming response.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{StatusCode, header};
use serde_json::Value;

use super::Client;

/// One dispatched event, or a comment line (`event == ":"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Message {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }

    pub fn id(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("event without a numeric id: {self:?}"))
    }
}

pub struct Stream {
    body: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    /// What was received and not yet read, from `at` on: a chunk can hold megabytes of
    /// events, so lines are read by moving `at`, and what was read is dropped only before
    /// the next chunk is added.
    buffer: Vec<u8>,
    at: usize,
}

impl Stream {
    /// Opens `path` as an event stream, resuming after `last_event_id` when given.
    pub async fn open(client: &Client, path: &str, last_event_id: Option<&str>) -> Result<Self, super::Resp> {
        let mut request = client.request(reqwest::Method::GET, path).header(header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        Self::from_request(request).await
    }

    /// Opens `path` as an event stream on a connection of its own, which the server answers on
    /// a lean connection, attached to its fan-out (a reused connection goes through hyper).
    pub async fn open_alone(client: &Client, path: &str) -> Result<Self, super::Resp> {
        let http = reqwest::Client::builder().cookie_provider(client.jar.clone()).build().expect("client");
        let request = http.get(client.base.join(path).expect("path")).header(header::ACCEPT, "text/event-stream");
        Self::from_request(request).await
    }

    pub async fn from_request(request: reqwest::RequestBuilder) -> Result<Self, super::Resp> {
        let response = request.send().await.expect("the stream's request reaches the server");
        let status = response.status();
        if status != StatusCode::OK {
            return Err(super::Resp::from(response).await);
        }
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(content_type.starts_with("text/event-stream"), "content type {content_type}");
        Ok(Self { body: response.bytes_stream().boxed(), buffer: Vec::new(), at: 0 })
    }

    /// The next message, comments included; `None` when the server ended the stream (with its
    /// last chunk: a connection cut short fails the test).
    pub async fn next_raw(&mut self, wait: Duration) -> Option<Message> {
        tokio::time::timeout(wait, self.message()).await.unwrap_or_else(|_| panic!("no message within {wait:?}"))
    }

    /// The next message, however long it takes.
    async fn message(&mut self) -> Option<Message> {
        let mut message = Message { id: None, event: String::new(), data: String::new() };
        let mut has_data = false;
        loop {
            while let Some(end) = self.buffer[self.at..].iter().position(|&byte| byte == b'\n') {
                let line = String::from_utf8_lossy(&self.buffer[self.at..self.at + end]);
                let line = line.trim_end_matches('\r').to_owned();
                self.at += end + 1;
                if line.is_empty() {
                    if has_data || message.id.is_some() || !message.event.is_empty() {
                        if message.event.is_empty() {
                            message.event = "message".into();
                        }
                        return Some(message);
                    }
                    continue;
                }
                if let Some(comment) = line.strip_prefix(':') {
                    return Some(Message { id: None, event: ":".into(), data: comment.trim().to_owned() });
                }
                let (field, value) = line.split_once(':').map_or((line.as_str(), ""), |(f, v)| (f, v));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => message.id = Some(value.to_owned()),
                    "event" => message.event = value.to_owned(),
                    "data" => {
                        if has_data {
                            message.data.push('\n');
                        }
                        message.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.buffer.drain(..self.at);
                    self.at = 0;
                    self.buffer.extend_from_slice(&chunk);
                }
                // A reset or a cut-short body is not the end the server says it sent.
                Some(Err(e)) => panic!("the stream broke instead of ending: {e:?}"),
                None => return None,
            }
        }
    }

    /// The next event within `wait`, skipping comments (heartbeats do not extend the wait);
    /// `None` at the end of the stream.
    pub async fn next(&mut self, wait: Duration) -> Option<Message> {
        self.next_within(wait).await.unwrap_or_else(|_| panic!("no event within {wait:?}"))
    }

    /// The next event within `wait`, skipping comments; an error when none came in time, for a
    /// caller that says more about what it was waiting for.
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<Message>, tokio::time::error::Elapsed> {
        let event = async {
            loop {
                let message = self.message().await?;
                if message.event != ":" {
                    return Some(message);
                }
            }
        };
        tokio::time::timeout(wait, event).await
    }

    /// The next event of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str, wait: Duration) -> Message {
        loop {
            let message = self.next(wait).await.unwrap_or_else(|| panic!("the stream ended before a `{kind}` event"));
            if message.event == kind {
                return message;
            }
        }
    }
}
