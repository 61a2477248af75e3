//! The dashboard's own HTTPS: the certificate chain and private key of `[dashboard]` (PEM files), served with rustls
//! (aws-lc-rs), TLS 1.2 and 1.3, HTTP/1.1.

use std::path::Path;
use std::sync::Arc;

use integration_config::DashboardTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// A loaded TLS configuration for [`crate::Dashboard::serve_tls`]. Loading it before binding the port makes a bad
/// certificate the first thing an operator sees.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the private key: never printed.
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Reads and checks the certificate chain and key: both must parse, and the key must belong to the first
    /// certificate.
    pub fn load(files: &DashboardTls) -> Result<Self, Error> {
        let problem = |file: &Path, problem: String| Error::Tls {
            file: file.to_path_buf(),
            problem,
        };
        let chain = CertificateDer::pem_file_iter(&files.cert_file)
            .map_err(|e| problem(&files.cert_file, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| problem(&files.cert_file, e.to_string()))?;
        if chain.is_empty() {
            return Err(problem(
                &files.cert_file,
                "it holds no certificate (expected one or more -----BEGIN CERTIFICATE----- blocks, the server's first)"
                    .to_owned(),
            ));
        }
        // The error names the file, never the key's bytes.
        let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| {
            problem(
                &files.key_file,
                format!("{e} (expected an unencrypted PKCS#8, PKCS#1 or SEC1 private key in PEM)"),
            )
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| problem(&files.cert_file, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                problem(
                    &files.key_file,
                    format!(
                        "{e} (is it the private key of the first certificate in {}?)",
                        files.cert_file.display()
                    ),
                )
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}
