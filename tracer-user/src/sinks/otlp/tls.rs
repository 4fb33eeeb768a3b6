//! The TLS files of the `OTEL_EXPORTER_OTLP_*CERTIFICATE` / `*CLIENT_KEY`
//! variables, read and checked once at start-up so that a bad file is one
//! message naming it, not a handshake failure on every export.
//!
//! Checked by building the rustls client configuration the HTTP transport
//! uses; the gRPC transport hands the same PEM bytes to tonic, which parses
//! them the same way (rustls-pki-types) into the same rustls.

use std::{fs, sync::Arc};

use rustls::{
    crypto::ring,
    pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
    ClientConfig, RootCertStore,
};

use super::{
    config::{PemFile, TlsFiles},
    OtlpError,
};

/// Checked TLS material for both transports.
pub struct TlsMaterial {
    /// The CA file as it is (PEM), when one replaces the built-in roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain and key files (PEM).
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// The same as a rustls client configuration.
    pub rustls: ClientConfig,
}

impl TlsMaterial {
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, OtlpError> {
        let mut roots = RootCertStore::empty();
        let ca_pem = if let Some(file) = &files.ca {
            let pem = read(file)?;
            for cert in certificates(file, &pem)? {
                roots
                    .add(cert)
                    .map_err(|err| bad(file, format!("not a usable CA certificate: {err}")))?;
            }
            Some(pem)
        } else {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            None
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| OtlpError::Tls(err.to_string()))?
            .with_root_certificates(roots);
        let (rustls, client_pem) = match &files.client {
            Some((cert_file, key_file)) => {
                let cert_pem = read(cert_file)?;
                let key_pem = read(key_file)?;
                let chain = certificates(cert_file, &cert_pem)?;
                let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| {
                    bad(
                        key_file,
                        format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {err}"),
                    )
                })?;
                let config = builder.with_client_auth_cert(chain, key).map_err(|err| {
                    bad(
                        key_file,
                        format!(
                            "not a key for the certificate in {}: {err}",
                            cert_file.path.display()
                        ),
                    )
                })?;
                (config, Some((cert_pem, key_pem)))
            }
            None => (builder.with_no_client_auth(), None),
        };
        Ok(TlsMaterial {
            ca_pem,
            client_pem,
            rustls,
        })
    }
}

fn bad(file: &PemFile, why: String) -> OtlpError {
    OtlpError::TlsFile {
        var: file.var,
        path: file.path.clone(),
        why,
    }
}

fn read(file: &PemFile) -> Result<Vec<u8>, OtlpError> {
    fs::read(&file.path).map_err(|err| bad(file, err.to_string()))
}

/// Every certificate of a PEM file; at least one.
fn certificates(file: &PemFile, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, OtlpError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bad(file, format!("not a PEM file: {err}")))?;
    if certs.is_empty() {
        return Err(bad(file, "no PEM CERTIFICATE block in it".to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn file(var: &'static str, path: &Path) -> PemFile {
        PemFile {
            var,
            path: path.to_owned(),
        }
    }

    fn load_err(files: &TlsFiles) -> String {
        match TlsMaterial::load(files) {
            Ok(_) => panic!("accepted {files:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn without_files_the_built_in_roots() {
        let material = TlsMaterial::load(&TlsFiles::default()).unwrap();
        assert!(material.ca_pem.is_none() && material.client_pem.is_none());
    }

    /// Bad files are one message naming the variable, the file and why.
    #[test]
    fn bad_files_are_named_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("tracer-tls-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let garbage = dir.join("garbage.pem");
        fs::write(&garbage, "not a certificate\n").unwrap();
        let broken = dir.join("broken.pem");
        fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();

        let err = load_err(&TlsFiles {
            ca: Some(file("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing)),
            client: None,
        });
        assert_eq!(
            err,
            format!(
                "OTEL_EXPORTER_OTLP_CERTIFICATE={}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let err = load_err(&TlsFiles {
            ca: Some(file("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &garbage)),
            client: None,
        });
        assert!(
            err.starts_with(&format!(
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE={}: no PEM CERTIFICATE",
                garbage.display()
            )),
            "{err}"
        );
        let err = load_err(&TlsFiles {
            ca: Some(file("OTEL_EXPORTER_OTLP_CERTIFICATE", &broken)),
            client: None,
        });
        assert!(err.contains("not a usable CA certificate"), "{err}");
        let err = load_err(&TlsFiles {
            ca: None,
            client: Some((
                file("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &broken),
                file("OTEL_EXPORTER_OTLP_CLIENT_KEY", &garbage),
            )),
        });
        assert!(
            err.starts_with(&format!(
                "OTEL_EXPORTER_OTLP_CLIENT_KEY={}: no usable PEM private key",
                garbage.display()
            )),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A certificate and key made by openssl; a key made for another
    /// certificate is refused, naming the key file.
    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("tracer-tls-keys-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b"] {
            let status = std::process::Command::new("openssl")
                .current_dir(&dir)
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=client",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.pem"),
                ])
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let client = |cert: &str, key: &str| TlsFiles {
            ca: None,
            client: Some((
                file("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &dir.join(cert)),
                file("OTEL_EXPORTER_OTLP_CLIENT_KEY", &dir.join(key)),
            )),
        };
        let material = TlsMaterial::load(&client("a.pem", "a.key")).unwrap();
        assert!(material.client_pem.is_some());
        let err = load_err(&client("a.pem", "b.key"));
        assert!(
            err.starts_with(&format!(
                "OTEL_EXPORTER_OTLP_CLIENT_KEY={}: not a key for the certificate in {}",
                dir.join("b.key").display(),
                dir.join("a.pem").display()
            )),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
