//! A real SMTP server on loopback for delivery tests: it speaks enough of RFC 5321 for lettre (EHLO, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT), keeps every accepted message, and can be told to refuse the next messages with a
//! temporary (4xx) or permanent (5xx) error.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A message the server accepted.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) from: String,
    pub(crate) to: Vec<String>,
    pub(crate) data: String,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    refuse: Vec<&'static str>,
}

/// The running server.
#[derive(Clone)]
pub(crate) struct SmtpServer {
    pub(crate) addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl SmtpServer {
    pub(crate) async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let server = SmtpServer { addr, shared };
        let accepting = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let session = accepting.clone();
                tokio::spawn(async move { session.serve(stream).await });
            }
        });
        server
    }

    /// Answers the end of the next message's DATA with `reply` (e.g. `451 4.3.0 try later`).
    pub(crate) fn refuse_next(&self, reply: &'static str) {
        self.shared.lock().unwrap().refuse.push(reply);
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    async fn serve(self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        if write.write_all(b"220 localhost ESMTP test\r\n").await.is_err() {
            return;
        }
        let mut from = String::new();
        let mut to = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = line.trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            let answer = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                "250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8".to_owned()
            } else if upper.starts_with("MAIL FROM:") {
                from = command[10..].trim().to_owned();
                to.clear();
                "250 2.1.0 ok".to_owned()
            } else if upper.starts_with("RCPT TO:") {
                to.push(command[8..].trim().to_owned());
                "250 2.1.5 ok".to_owned()
            } else if upper == "DATA" {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await.unwrap();
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    data.push_str(&line);
                }
                let mut shared = self.shared.lock().unwrap();
                if shared.refuse.is_empty() {
                    shared.received.push(Received {
                        from: from.clone(),
                        to: to.clone(),
                        data,
                    });
                    "250 2.0.0 queued".to_owned()
                } else {
                    shared.refuse.remove(0).to_owned()
                }
            } else if upper == "QUIT" {
                let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                return;
            } else if upper == "RSET" || upper == "NOOP" {
                "250 2.0.0 ok".to_owned()
            } else {
                "502 5.5.2 command not implemented".to_owned()
            };
            if write.write_all(format!("{answer}\r\n").as_bytes()).await.is_err() {
                return;
            }
        }
    }
}
