//! gRPC over HTTP/2: method names and status codes.

use crate::protocols::Fault;

/// `(service, method)` of a gRPC `:path`, `/package.Service/Method`.
pub(super) fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let part_ok = |part: &str| !part.is_empty() && !part.contains(['/', '?', '#']);
    (part_ok(service) && part_ok(method)).then_some((service, method))
}

/// Who is at fault for a gRPC status, after the OpenTelemetry gRPC
/// conventions: on a server span only UNKNOWN, `DEADLINE_EXCEEDED`,
/// UNIMPLEMENTED, INTERNAL, UNAVAILABLE and `DATA_LOSS` are errors (the
/// server failed); any other non-OK code is the caller's doing, an error
/// on client spans only. Codes gRPC does not define count as UNKNOWN.
#[expect(
    clippy::match_same_arms,
    reason = "server codes spelled out as the conventions list them; undefined codes count as UNKNOWN, a server fault too"
)]
pub(super) fn fault(code: i64) -> Fault {
    match code {
        0 => Fault::None,
        2 | 4 | 12 | 13 | 14 | 15 => Fault::Server,
        1 | 3 | 5..=11 | 16 => Fault::Client,
        _ => Fault::Server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            split_path("/demo.v1.Greeter/SayHello"),
            Some(("demo.v1.Greeter", "SayHello"))
        );
        assert_eq!(
            split_path("/Greeter/SayHello"),
            Some(("Greeter", "SayHello"))
        );
        for bad in [
            "", "/", "//x", "/svc/", "/svc", "svc/m", "/a/b/c", "/a/b?x=1",
        ] {
            assert_eq!(split_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn faults_follow_the_semantic_conventions() {
        assert_eq!(fault(0), Fault::None);
        // NOT_FOUND, INVALID_ARGUMENT, CANCELLED, UNAUTHENTICATED
        for code in [5, 3, 1, 16] {
            assert_eq!(fault(code), Fault::Client, "{code}");
        }
        // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
        for code in [2, 4, 12, 13, 14, 15, 99] {
            assert_eq!(fault(code), Fault::Server, "{code}");
        }
    }
}
