//! `serve` and `demo --serve`: the dashboard as an operator starts it, reached over loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use super::text;

/// Answers status and body of one HTTP/1.1 request to `address`.
fn http(address: &str, method: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {response}"));
    (status, response)
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's stdout until a line starts with `prefix`; answers the lines read so far.
fn read_until(stdout: &mut impl BufRead, prefix: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for line in stdout.lines() {
        let line = line.unwrap();
        let done = line.starts_with(prefix);
        lines.push(line);
        if done {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no line starting {prefix:?} in time: {lines:#?}"
        );
    }
    panic!("the process ended before printing {prefix:?}: {lines:#?}");
}

fn address_in(line: &str) -> String {
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no URL in {line}"))
        .to_owned()
}

/// `serve` on `config` with `token` as its credential, read until it prints a line starting with `listening`.
fn start_serve(config: &std::path::Path, token: &str, listening: &str) -> (Running, Vec<String>) {
    let mut child = serve_command(config)
        .env("SYNC_DASHBOARD_CREDENTIAL", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let running = Running(child);
    let lines = read_until(&mut stdout, listening);
    (running, lines)
}

/// The port of the URL in a `dashboard listening on http(s)://HOST:PORT/ ...` line.
fn port_in(line: &str) -> String {
    let after = line.split("://").nth(1).unwrap_or_else(|| panic!("no URL in {line}"));
    let address = after.split('/').next().unwrap();
    address.rsplit(':').next().unwrap().to_owned()
}

fn config_file(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("sync.toml");
    std::fs::write(
        &path,
        format!(
            "mapping = \"builtin:hlf-default\"\n{extra}[store]\nurl = \"sqlite://{}\"\n\
             [[organisations]]\nid = \"hlf\"\nname = \"HLF\"\n",
            dir.join("sync.db").display()
        ),
    )
    .unwrap();
    path
}

fn serve_command(config: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sync-worker"));
    command
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("DYNAMICS_TENANT_ID", "00000000-0000-4000-8000-000000000001")
        .env("DYNAMICS_CLIENT_ID", "00000000-0000-4000-8000-000000000002")
        .env("DYNAMICS_CLIENT_SECRET", "not-a-real-secret-value")
        .env("DYNAMICS_INSTANCE_URL", "https://hlf.crm4.dynamics.com")
        .env_remove("SYNC_DASHBOARD_CREDENTIAL")
        .env_remove("SYNC_CONFIG")
        .env_remove("RUST_LOG");
    command
}

#[test]
fn serve_without_a_credential_exits_3_and_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    let output = serve_command(&config).output().unwrap();
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(3), "{printed}");
    assert!(
        printed.contains("the dashboard has no admin credential; set the SYNC_DASHBOARD_CREDENTIAL variable"),
        "{printed}"
    );
    // A guessable one is refused too, saying how to make a good one and never echoing it.
    let output = serve_command(&config)
        .env("SYNC_DASHBOARD_CREDENTIAL", "admin123")
        .output()
        .unwrap();
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(3), "{printed}");
    assert!(
        printed.contains(
            "SYNC_DASHBOARD_CREDENTIAL has 8 characters; use at least 32 (for example `openssl rand -hex 32`"
        ),
        "{printed}"
    );
    assert!(!printed.contains("admin123"), "{printed}");
}

#[test]
fn serve_listens_on_the_configured_address_and_needs_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "[dashboard]\nbind = \"127.0.0.1:0\"\n");
    let token = "serve-test-token-4f1e2d-0123456789abcdef";
    let (child, lines) = start_serve(&config, token, "dashboard listening on http://127.0.0.1:");
    let address = address_in(lines.last().unwrap());
    assert_eq!(http(&address, "GET", "/healthz", None).0, 200);
    let (status, response) = http(&address, "GET", "/", None);
    assert_eq!(status, 401, "{response}");
    assert!(response.contains("WWW-Authenticate: Basic realm=") || response.contains("www-authenticate: Basic realm="));
    let (status, page) = http(&address, "GET", "/config", Some(&format!("Bearer {token}")));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("hlf.crm4.dynamics.com"), "{page}");
    assert!(
        !page.contains("not-a-real-secret-value") && !page.contains(token),
        "no secret on the page"
    );
    assert!(page.contains("content-security-policy: default-src 'self'"), "{page}");
    drop(child);
}

#[test]
fn demo_serve_prints_the_url_and_a_credential_and_shows_the_demo_results() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-worker"))
        .args(["demo", "--serve", "--bind", "127.0.0.1:0"])
        .env_remove("SYNC_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let child = Running(child);
    let mut lines = read_until(&mut stdout, "Dashboard: http://127.0.0.1:");
    let address = address_in(lines.last().unwrap());
    lines.extend(read_until(
        &mut stdout,
        "  sign in with any user name and the password ",
    ));
    let credential = lines
        .last()
        .unwrap()
        .trim_start_matches("  sign in with any user name and the password ")
        .to_owned();
    assert_eq!(credential.len(), 48, "{lines:#?}");
    assert_eq!(http(&address, "GET", "/", None).0, 401);
    let bearer = format!("Bearer {credential}");
    let (status, page) = http(&address, "GET", "/conflicts", Some(&bearer));
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("@app-endret.example") && page.contains("@hlf-medlem.example"),
        "{page}"
    );
    let (status, page) = http(&address, "GET", "/api/failures", Some(&bearer));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("\"state\":\"dead\"") && page.contains("899990"), "{page}");
    assert!(!page.contains(dataverse_sim::DEFAULT_CLIENT_SECRET));
    drop(child);
}

#[test]
fn demo_serve_refuses_an_address_that_is_not_loopback() {
    let output = Command::new(env!("CARGO_BIN_EXE_sync-worker"))
        .args(["demo", "--serve", "--bind", "0.0.0.0:8088"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("listens on loopback only"), "{}", text(&output));
}

/// A self-signed certificate for 127.0.0.1 and its key, written to `dir`; answers their paths.
fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

#[test]
fn serve_off_loopback_needs_tls_or_a_declared_tls_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let token = "serve-test-token-4f1e2d-0123456789abcdef";

    // Plain HTTP on every interface: refused before anything listens, saying both ways out.
    let config = config_file(dir.path(), "[dashboard]\nbind = \"0.0.0.0:0\"\n");
    let output = serve_command(&config)
        .env("SYNC_DASHBOARD_CREDENTIAL", token)
        .output()
        .unwrap();
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(3), "{printed}");
    for needed in [
        "dashboard.bind 0.0.0.0:0 is not a loopback address",
        "clear text",
        "dashboard.tls_cert_file",
        "dashboard.behind_tls_proxy = true",
    ] {
        assert!(printed.contains(needed), "{needed}: {printed}");
    }

    // Behind a proxy the operator declared: it listens in plain HTTP and says so.
    let config = config_file(
        dir.path(),
        "[dashboard]\nbind = \"0.0.0.0:0\"\nbehind_tls_proxy = true\n",
    );
    let (running, lines) = start_serve(&config, token, "dashboard listening on http://0.0.0.0:");
    assert!(lines.last().unwrap().contains("behind the TLS proxy"), "{lines:?}");
    let port = port_in(lines.last().unwrap());
    assert_eq!(http(&format!("127.0.0.1:{port}"), "GET", "/healthz", None).0, 200);
    drop(running);

    // With its own certificate: HTTPS, and a plain HTTP request gets no page.
    let (cert, key) = self_signed(dir.path(), "dashboard");
    let config = config_file(
        dir.path(),
        "[dashboard]\nbind = \"0.0.0.0:0\"\ntls_cert_file = \"dashboard.crt\"\ntls_key_file = \"dashboard.key\"\n",
    );
    let (running, lines) = start_serve(&config, token, "dashboard listening on https://0.0.0.0:");
    let port = port_in(lines.last().unwrap());
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "served in clear text"
    );
    drop(running);

    // A key that is not the certificate's: exit 3 naming the key file, never its contents.
    let (_, other_key) = self_signed(dir.path(), "other");
    std::fs::copy(&other_key, &key).unwrap();
    let output = serve_command(&config)
        .env("SYNC_DASHBOARD_CREDENTIAL", token)
        .output()
        .unwrap();
    let printed = text(&output);
    assert_eq!(output.status.code(), Some(3), "{printed}");
    assert!(printed.contains("dashboard.key for the dashboard's TLS"), "{printed}");
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    let _ = cert;
}
