//! Who a span belongs to: the OpenTelemetry Resource of a traced process
//! (`service.name`, `process.pid`, ...), shared by every sink that names
//! services (OTLP, the file, metrics, the latency table).

use std::sync::Arc;

use thiserror::Error;

use crate::process::cgroup;

/// `OTEL_RESOURCE_ATTRIBUTES` could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("OTEL_RESOURCE_ATTRIBUTES: {0:?} is not key=value")]
    NotKeyValue(String),
    #[error("OTEL_RESOURCE_ATTRIBUTES: {0:?} is not valid percent-encoding")]
    BadEncoding(String),
}

/// How every traced process is described; one per run.
#[derive(Clone, Debug, Default)]
pub struct ResourceConfig {
    /// `--service-name` or `OTEL_SERVICE_NAME` (or `service.name` from
    /// `OTEL_RESOURCE_ATTRIBUTES`): one name for every process.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, in order, without `service.name`.
    pub attributes: Vec<(String, String)>,
    pub host_name: Option<String>,
}

/// A resource attribute value (OTLP keeps its type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceValue {
    Str(String),
    Int(i64),
}

impl ResourceConfig {
    /// From `--service-name` and the environment (`env` looks a variable up).
    pub fn from_env(
        service_name_flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ResourceError> {
        let mut attributes = match env("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => parse_key_values(&list).map_err(|err| match err {
                KeyValueError::NotKeyValue(s) => ResourceError::NotKeyValue(s),
                KeyValueError::BadEncoding(s) => ResourceError::BadEncoding(s),
            })?,
            None => Vec::new(),
        };
        let from_attributes = attributes
            .iter()
            .rposition(|(k, _)| k == "service.name")
            .map(|i| attributes[i].1.clone());
        attributes.retain(|(k, _)| k != "service.name");
        // Precedence per the OpenTelemetry SDK spec: OTEL_SERVICE_NAME wins
        // over service.name in OTEL_RESOURCE_ATTRIBUTES; our flag wins over both.
        let service_name = service_name_flag
            .map(str::to_owned)
            .or_else(|| env("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()))
            .or(from_attributes);
        Ok(ResourceConfig {
            service_name,
            attributes,
            host_name: host_name(),
        })
    }

    /// The service a process's spans belong to.
    /// [`service_name`](Self::service_name) borrowed, for per-span use.
    pub fn service_name_str<'a>(&'a self, process: &'a str) -> &'a str {
        self.service_name.as_deref().unwrap_or(process)
    }

    pub fn service_name(&self, process: &str) -> Arc<str> {
        match &self.service_name {
            Some(name) => Arc::from(name.as_str()),
            None => Arc::from(process),
        }
    }

    /// The Resource attributes of one traced process.
    pub fn attributes(&self, pid: u32, process: &str) -> Vec<(String, ResourceValue)> {
        let mut out: Vec<(String, ResourceValue)> = Vec::with_capacity(8 + self.attributes.len());
        out.push((
            "service.name".into(),
            ResourceValue::Str(self.service_name(process).to_string()),
        ));
        if let Some(host) = &self.host_name {
            out.push(("host.name".into(), ResourceValue::Str(host.clone())));
        }
        out.push((
            "telemetry.sdk.name".into(),
            ResourceValue::Str("tracer".into()),
        ));
        out.push((
            "telemetry.sdk.language".into(),
            ResourceValue::Str("rust".into()),
        ));
        out.push((
            "telemetry.sdk.version".into(),
            ResourceValue::Str(env!("CARGO_PKG_VERSION").into()),
        ));
        // The user's attributes may override host.name and the like, but
        // not what identifies the process: that is measured, not configured.
        for (key, value) in &self.attributes {
            if key == "process.pid" || key == "process.executable.name" {
                continue;
            }
            match out.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = ResourceValue::Str(value.clone()),
                None => out.push((key.clone(), ResourceValue::Str(value.clone()))),
            }
        }
        // Measured from the process's cgroup, when it runs in a container.
        if let Some(path) = cgroup::cgroup_path_of(pid) {
            let mut measured =
                |key: &str, value: String| match out.iter_mut().find(|(k, _)| k == key) {
                    Some(slot) => slot.1 = ResourceValue::Str(value),
                    None => out.push((key.to_owned(), ResourceValue::Str(value))),
                };
            if let Some(id) = cgroup::container_id(&path) {
                measured("container.id", id.to_owned());
            }
            if let Some(uid) = cgroup::pod_uid(&path) {
                measured("k8s.pod.uid", uid);
            }
        }
        out.push(("process.pid".into(), ResourceValue::Int(i64::from(pid))));
        out.push((
            "process.executable.name".into(),
            ResourceValue::Str(process.to_owned()),
        ));
        out
    }
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyValueError {
    NotKeyValue(String),
    BadEncoding(String),
}

/// `k=v,k2=v2` as in `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`:
/// keys and values trimmed, values percent-decoded, empty members skipped.
pub(crate) fn parse_key_values(list: &str) -> Result<Vec<(String, String)>, KeyValueError> {
    let mut out = Vec::new();
    for member in list.split(',') {
        if member.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = member.split_once('=') else {
            return Err(KeyValueError::NotKeyValue(member.trim().to_owned()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(KeyValueError::NotKeyValue(member.trim().to_owned()));
        }
        let value = percent_decode(value.trim())
            .ok_or_else(|| KeyValueError::BadEncoding(value.trim().to_owned()))?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn key_values_are_trimmed_and_percent_decoded() {
        assert_eq!(
            parse_key_values(" a = b ,c=d%2Ce%3Df,, empty=").unwrap(),
            [
                ("a".into(), "b".into()),
                ("c".into(), "d,e=f".into()),
                ("empty".into(), String::new())
            ]
        );
        assert_eq!(
            parse_key_values("novalue"),
            Err(KeyValueError::NotKeyValue("novalue".into()))
        );
        assert_eq!(
            parse_key_values("=v"),
            Err(KeyValueError::NotKeyValue("=v".into()))
        );
        assert_eq!(
            parse_key_values("a=%zz"),
            Err(KeyValueError::BadEncoding("%zz".into()))
        );
        assert_eq!(
            parse_key_values("a=%4"),
            Err(KeyValueError::BadEncoding("%4".into()))
        );
        assert_eq!(parse_key_values("").unwrap(), []);
    }

    #[test]
    fn service_name_precedence() {
        let attrs = "service.name=from-attrs,deployment.environment=prod";
        let c = ResourceConfig::from_env(None, env(&[])).unwrap();
        assert_eq!(&*c.service_name("nginx"), "nginx");
        let c =
            ResourceConfig::from_env(None, env(&[("OTEL_RESOURCE_ATTRIBUTES", attrs)])).unwrap();
        assert_eq!(&*c.service_name("nginx"), "from-attrs");
        let c = ResourceConfig::from_env(
            None,
            env(&[
                ("OTEL_RESOURCE_ATTRIBUTES", attrs),
                ("OTEL_SERVICE_NAME", "from-env"),
            ]),
        )
        .unwrap();
        assert_eq!(&*c.service_name("nginx"), "from-env");
        let c = ResourceConfig::from_env(Some("flag"), env(&[("OTEL_SERVICE_NAME", "from-env")]))
            .unwrap();
        assert_eq!(&*c.service_name("nginx"), "flag");
        assert!(
            ResourceConfig::from_env(None, env(&[("OTEL_RESOURCE_ATTRIBUTES", "junk")])).is_err()
        );
    }

    #[test]
    fn process_attributes_are_measured_not_configured() {
        let c = ResourceConfig::from_env(
            None,
            env(&[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "process.pid=1,host.name=h,team=a%20b",
            )]),
        )
        .unwrap();
        let attrs = c.attributes(42, "nginx");
        let get = |k: &str| {
            attrs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("process.pid"), Some(ResourceValue::Int(42)));
        assert_eq!(
            get("process.executable.name"),
            Some(ResourceValue::Str("nginx".into()))
        );
        assert_eq!(
            get("service.name"),
            Some(ResourceValue::Str("nginx".into()))
        );
        assert_eq!(get("host.name"), Some(ResourceValue::Str("h".into())));
        assert_eq!(get("team"), Some(ResourceValue::Str("a b".into())));
        assert_eq!(
            get("telemetry.sdk.name"),
            Some(ResourceValue::Str("tracer".into()))
        );
        assert_eq!(attrs.iter().filter(|(k, _)| k == "process.pid").count(), 1);
    }
}
