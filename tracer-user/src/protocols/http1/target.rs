//! The parts of a request-target that spans may show.

/// Path and query of a request-target, borrowed from the request line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TargetParts<'a> {
    /// `None` for authority-form (`CONNECT host:port`), which names a server
    /// rather than a resource.
    pub path: Option<&'a str>,
    /// Without the `?`; `None` when absent or empty.
    pub query: Option<&'a str>,
}

pub(super) fn split_target(target: &str, is_connect: bool) -> TargetParts<'_> {
    if is_connect {
        return TargetParts {
            path: None,
            query: None,
        };
    }
    // Absolute-form (sent to proxies): drop `scheme://authority`. Origin
    // form (`/...`, nearly every request) cannot be one, as a scheme starts
    // with a letter: no search for `://` there.
    let absolute = if target.starts_with('/') {
        None
    } else {
        target.split_once("://")
    };
    let resource = match absolute {
        Some((scheme, rest)) if is_scheme(scheme) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            rest.get(authority_end..).unwrap_or_default()
        }
        _ => target,
    };
    // A fragment is not sent by conforming clients; never show one.
    let without_fragment = resource
        .split_once('#')
        .map_or(resource, |(before, _)| before);
    let (path, query) = match without_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query).filter(|q| !q.is_empty())),
        None => (without_fragment, None),
    };
    TargetParts {
        path: Some(if path.is_empty() { "/" } else { path }),
        query,
    }
}

fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str) -> (Option<&str>, Option<&str>) {
        let p = split_target(target, false);
        (p.path, p.query)
    }

    #[test]
    fn origin_form() {
        assert_eq!(parts("/"), (Some("/"), None));
        assert_eq!(parts("/a/b?x=1&y=2"), (Some("/a/b"), Some("x=1&y=2")));
        assert_eq!(parts("/a?"), (Some("/a"), None));
        assert_eq!(parts("/a#frag"), (Some("/a"), None));
        assert_eq!(parts("/a?q=1#frag"), (Some("/a"), Some("q=1")));
        assert_eq!(parts("/a/http://b"), (Some("/a/http://b"), None));
    }

    #[test]
    fn absolute_form() {
        assert_eq!(parts("http://example.org/x?y=1"), (Some("/x"), Some("y=1")));
        assert_eq!(parts("http://example.org"), (Some("/"), None));
        assert_eq!(
            parts("https://user@example.org:8443?q"),
            (Some("/"), Some("q"))
        );
    }

    #[test]
    fn asterisk_and_authority_forms() {
        assert_eq!(parts("*"), (Some("*"), None));
        let connect = split_target("example.org:443", true);
        assert_eq!(
            connect,
            TargetParts {
                path: None,
                query: None
            }
        );
    }
}
