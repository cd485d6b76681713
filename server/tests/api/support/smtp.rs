//! A real SMTP server for tests: it speaks enough of RFC 5321 for lettre to deliver to it, and
//! keeps every message so a test can read the link out of the email that was actually sent.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{Mutex, Notify},
};

#[derive(Clone, Debug)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    /// The body, transfer-decoded.
    pub body: String,
}

impl Mail {
    /// The first `http(s)://` link in the body.
    pub fn link(&self) -> String {
        let start = self.body.find("http").expect("the email carries a link");
        self.body[start..].split_whitespace().next().expect("link").to_owned()
    }

    /// The `token` query parameter of the email's link.
    pub fn token(&self) -> String {
        let url = url::Url::parse(&self.link()).expect("link is a URL");
        url.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()).expect("token in link")
    }
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    arrived: Arc<Notify>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP sink");
        let port = listener.local_addr().expect("addr").port();
        let sink = Self { port, mails: Arc::default(), arrived: Arc::default() };
        let server = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().session(stream));
            }
        });
        sink
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message delivered so far.
    pub async fn all(&self) -> Vec<Mail> {
        self.mails.lock().await.clone()
    }

    /// Waits (up to 60 s) for the `n`-th message (1-based) addressed to `to`.
    pub async fn nth_to(&self, to: &str, n: usize) -> Mail {
        let wait = async {
            loop {
                let notified = self.arrived.notified();
                let found: Vec<Mail> = self
                    .mails
                    .lock()
                    .await
                    .iter()
                    .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
                    .cloned()
                    .collect();
                if found.len() >= n {
                    return found[n - 1].clone();
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("no email number {n} to {to} arrived within 60 s"))
    }

    pub async fn first_to(&self, to: &str) -> Mail {
        self.nth_to(to, 1).await
    }

    /// Waits for the first message to `to` whose subject starts with `subject`.
    pub async fn first_with_subject(&self, to: &str, subject: &str) -> Mail {
        for n in 1.. {
            let mail = self.nth_to(to, n).await;
            if mail.subject.starts_with(subject) {
                return mail;
            }
        }
        unreachable!("the loop returns or panics")
    }

    async fn session(self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        if write.write_all(b"220 sink.test ESMTP\r\n").await.is_err() {
            return;
        }
        let mut recipients = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let command = line.trim_end().to_ascii_uppercase();
            let response: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
                b"250-sink.test\r\n250 8BITMIME\r\n"
            } else if command.starts_with("MAIL FROM") {
                recipients.clear();
                b"250 OK\r\n"
            } else if command.starts_with("RCPT TO") {
                let address = line.trim_end()[8..].trim().trim_start_matches('<').trim_end_matches('>').to_owned();
                recipients.push(address);
                b"250 OK\r\n"
            } else if command == "DATA" {
                if write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await.is_err() {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Undo dot-stuffing.
                    data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
                }
                self.mails.lock().await.push(parse(std::mem::take(&mut recipients), &data));
                self.arrived.notify_waiters();
                b"250 OK: queued\r\n"
            } else if command == "QUIT" {
                let _ = write.write_all(b"221 Bye\r\n").await;
                return;
            } else if command.starts_with("RSET") || command.starts_with("NOOP") {
                b"250 OK\r\n"
            } else {
                b"502 Command not implemented\r\n"
            };
            if write.write_all(response).await.is_err() {
                return;
            }
        }
    }
}

fn parse(to: Vec<String>, data: &str) -> Mail {
    let data = data.replace("\r\n", "\n");
    let (head, body) = data.split_once("\n\n").unwrap_or((&data, ""));
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };
    let body = match header("Content-Transfer-Encoding").as_deref() {
        Some(enc) if enc.eq_ignore_ascii_case("quoted-printable") => decode_quoted_printable(body),
        _ => body.to_owned(),
    };
    Mail { to, subject: header("Subject").unwrap_or_default(), body }
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
