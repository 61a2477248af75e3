//! `Dashboard::serve_tls`: the dashboard in HTTPS from PEM files, as `sync-worker serve` runs it with
//! `dashboard.tls_cert_file` and `dashboard.tls_key_file`.

use std::path::Path;

use dashboard::{Error, ServerTls};
use integration_config::DashboardTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::{TOKEN, World, each, tempfile_dir};

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it: the CA's PEM, and the chain and key
/// written to `dir` as an operator would install them.
fn certificate(dir: &Path, name: &str) -> (String, DashboardTls) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "HLF test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf.signed_by(&key, &issuer).unwrap();
    let files = DashboardTls {
        cert_file: dir.join(format!("{name}.crt")),
        key_file: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert_file, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
    (ca_cert.pem(), files)
}

#[tokio::test]
async fn the_dashboard_speaks_https_from_the_configured_files_and_nothing_in_clear_text() {
    each(|db| async move {
        let w = World::new(&db).await;
        let dir = tempfile_dir();
        let (ca, files) = certificate(&dir, "dashboard");
        let tls = ServerTls::load(&files).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dashboard = w.dashboard.clone();
        let server = tokio::spawn(async move {
            dashboard
                .serve_tls(listener, tls, async {
                    let _ = stopped.await;
                })
                .await
        });

        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        let health = client
            .get(format!("https://localhost:{}/healthz", address.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(health.headers()["strict-transport-security"], "max-age=31536000");
        let overview = client
            .get(format!("https://127.0.0.1:{}/", address.port()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(overview.status(), 200);
        assert!(overview.text().await.unwrap().contains("HLF"));
        let anonymous = client
            .get(format!("https://127.0.0.1:{}/api/overview", address.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);

        // Plain HTTP on the same port gets no page: the credential never crosses in clear text.
        let plain = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/", address.port()))
            .bearer_auth(TOKEN)
            .send()
            .await;
        assert!(plain.is_err() || plain.unwrap().status() != 200);

        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(15), server)
            .await
            .expect("the server stops after the shutdown signal")
            .unwrap()
            .unwrap();
        drop(w);
        db
    })
    .await;
}

#[test]
fn unusable_certificate_or_key_files_are_named_and_the_key_is_never_shown() {
    let dir = tempfile_dir();
    let (_, files) = certificate(&dir, "good");
    let (_, other) = certificate(&dir, "other");
    let key_text = std::fs::read_to_string(&files.key_file).unwrap();
    let message = |files: &DashboardTls| -> (std::path::PathBuf, String) {
        match ServerTls::load(files).unwrap_err() {
            error @ Error::Tls { .. } => {
                let Error::Tls { ref file, .. } = error else {
                    unreachable!()
                };
                (file.clone(), error.to_string())
            }
            other => panic!("{other:?}"),
        }
    };

    // The key of another certificate.
    let mismatched = DashboardTls {
        cert_file: files.cert_file.clone(),
        key_file: other.key_file.clone(),
    };
    let (file, text) = message(&mismatched);
    assert_eq!(file, other.key_file);
    assert!(text.contains("private key of the first certificate"), "{text}");

    // A certificate file that holds a key, and one that holds nothing.
    let swapped = DashboardTls {
        cert_file: files.key_file.clone(),
        key_file: files.key_file.clone(),
    };
    let (file, text) = message(&swapped);
    assert_eq!(file, files.key_file);
    assert!(text.contains("no certificate"), "{text}");
    assert!(!text.contains(key_text.lines().nth(1).unwrap()), "{text}");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a pem file\n").unwrap();
    let (file, _) = message(&DashboardTls {
        cert_file: files.cert_file.clone(),
        key_file: empty.clone(),
    });
    assert_eq!(file, empty);

    // A missing file.
    let missing = dir.join("missing.crt");
    let (file, text) = message(&DashboardTls {
        cert_file: missing.clone(),
        key_file: files.key_file.clone(),
    });
    assert_eq!(file, missing);
    assert!(text.contains("missing.crt"), "{text}");
    assert!(ServerTls::load(&files).is_ok());
}
