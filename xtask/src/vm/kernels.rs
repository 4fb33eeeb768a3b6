//! Debian kernel images for the guests, fetched with a private apt
//! configuration so the host's own apt sources and state stay untouched.
//!
//! The mirror is the host's (read from its apt sources at run time, never
//! written down here), the signatures are checked with the host's Debian
//! archive keyring, and every suite gets its own scratch apt state under
//! `target/vm-cache/apt/<suite>/`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{pipeline, shown};
use crate::run_checked;

/// A Debian kernel the matrix can boot.
pub struct DebianKernel {
    /// Its name on the command line and in the table.
    pub label: &'static str,
    /// The suite whose current cloud kernel it is.
    pub suite: &'static str,
}

pub const DEBIAN_KERNELS: &[DebianKernel] = &[
    DebianKernel {
        label: "5.10",
        suite: "bullseye",
    },
    DebianKernel {
        label: "6.1",
        suite: "bookworm",
    },
    DebianKernel {
        label: "6.12",
        suite: "bookworm-backports",
    },
    DebianKernel {
        label: "trixie",
        suite: "trixie",
    },
];

/// The `-cloud-amd64` flavour boots with `console=ttyS0` and needs no
/// modules for an initramfs-only guest; this metapackage depends on the
/// suite's current versioned image package.
const METAPACKAGE: &str = "linux-image-cloud-amd64";

/// The host's Debian archive keyring; it holds the bullseye, bookworm and
/// trixie archive keys (debian-archive-keyring 2023.3), so no suite needs
/// `[trusted=yes]`.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Fetches kernel images into the cache, looking up the host's mirror once
/// and only when something has to be downloaded.
pub struct Fetcher {
    cache: PathBuf,
    mirror: Option<String>,
}

impl Fetcher {
    pub fn new(cache: &Path) -> Fetcher {
        Fetcher {
            cache: cache.to_path_buf(),
            mirror: None,
        }
    }

    /// The cached `vmlinuz` of `kernel`, downloaded first if the cache has
    /// none. A cached kernel is kept until its directory is removed.
    pub fn vmlinuz(&mut self, kernel: &DebianKernel) -> Result<PathBuf> {
        let dir = self.cache.join("kernels").join(kernel.label);
        let vmlinuz = dir.join("vmlinuz");
        if vmlinuz.is_file() {
            return Ok(vmlinuz);
        }
        eprintln!(
            "xtask: fetching the {} cloud kernel of {}",
            kernel.label, kernel.suite
        );
        let mirror = self.mirror()?;
        let apt = PrivateApt::new(&self.cache, kernel.suite, &mirror)?;
        apt.update()?;
        let package = apt.image_package()?;
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let deb = apt.download(&package, &dir)?;
        extract_vmlinuz(&deb, &vmlinuz)?;
        fs::write(dir.join("package"), format!("{package}\n"))
            .with_context(|| format!("writing {}", dir.display()))?;
        eprintln!("xtask: {package} -> {}", shown(&vmlinuz));
        Ok(vmlinuz)
    }

    fn mirror(&mut self) -> Result<String> {
        if let Some(mirror) = &self.mirror {
            return Ok(mirror.clone());
        }
        let mirror = host_mirror()?;
        self.mirror = Some(mirror.clone());
        Ok(mirror)
    }
}

/// apt with its own sources, lists, cache and (empty) dpkg status, through
/// `APT_CONFIG`. The host's `apt.conf.d` still applies, e.g. a proxy.
struct PrivateApt {
    dir: PathBuf,
    config: PathBuf,
}

impl PrivateApt {
    fn new(cache: &Path, suite: &str, mirror: &str) -> Result<PrivateApt> {
        let dir = cache.join("apt").join(suite);
        for sub in [
            "lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
        ] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write("status", String::new())?;
        // Only the Packages index: no translations, no AppStream metadata.
        write(
            "sources.list",
            format!("deb [signed-by={KEYRING} target=Packages] {mirror} {suite} main\n"),
        )?;
        write("apt.conf", apt_config(&dir))?;
        Ok(PrivateApt {
            config: dir.join("apt.conf"),
            dir,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("APT_CONFIG", &self.config);
        cmd
    }

    fn update(&self) -> Result<()> {
        run_checked(self.command("apt-get").args(["update", "-qq"])).with_context(|| {
            format!(
                "apt-get update with the private config {}",
                self.config.display()
            )
        })
    }

    /// The versioned image package the cloud metapackage points at now.
    fn image_package(&self) -> Result<String> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", METAPACKAGE])
            .output()
            .context("starting apt-cache")?;
        if !out.status.success() {
            bail!(
                "apt-cache show {METAPACKAGE} in {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        image_dependency(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| anyhow!("{METAPACKAGE} depends on no linux-image package"))
    }

    /// Downloads `package`'s .deb into `dir`; returns its path.
    fn download(&self, package: &str, dir: &Path) -> Result<PathBuf> {
        run_checked(
            self.command("apt-get")
                .current_dir(dir)
                .args(["download", "-qq", package]),
        )
        .with_context(|| format!("apt-get download {package}"))?;
        let prefix = format!("{package}_");
        fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| {
                let name = path.file_name().and_then(|n| n.to_str());
                let deb = path.extension().is_some_and(|e| e == "deb");
                deb && name.is_some_and(|n| n.starts_with(&prefix))
            })
            .ok_or_else(|| {
                anyhow!(
                    "apt-get download left no {prefix}*.deb in {}",
                    dir.display()
                )
            })
    }
}

fn apt_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"Dir::Etc::SourceList "{d}/sources.list";
Dir::Etc::SourceParts "{d}/sources.list.d";
Dir::Etc::Preferences "{d}/preferences";
Dir::Etc::PreferencesParts "{d}/preferences.d";
Dir::State::Lists "{d}/lists";
Dir::State::status "{d}/status";
Dir::Cache "{d}/cache";
APT::Architecture "amd64";
APT::Architectures {{ "amd64"; }};
Acquire::Languages "none";
// Downloads go to a root-owned directory the _apt user cannot write;
// apt would fall back to root anyway, with a warning per file.
APT::Sandbox::User "root";
"#
    )
}

/// The first `linux-image-*` package of the first `Depends:` field of
/// `apt-cache show` output.
fn image_dependency(show: &str) -> Option<String> {
    let depends = show
        .lines()
        .find_map(|line| line.strip_prefix("Depends:"))?;
    depends
        .split([',', '|'])
        .map(|dep| dep.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-"))
        .map(str::to_owned)
}

/// Takes `boot/vmlinuz-*` out of `deb` into `vmlinuz`, then drops the .deb.
fn extract_vmlinuz(deb: &Path, vmlinuz: &Path) -> Result<()> {
    let dir = vmlinuz
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", vmlinuz.display()))?;
    let unpacked = dir.join("unpacked");
    if unpacked.exists() {
        fs::remove_dir_all(&unpacked)
            .with_context(|| format!("removing {}", unpacked.display()))?;
    }
    fs::create_dir_all(&unpacked).with_context(|| format!("creating {}", unpacked.display()))?;
    pipeline(&mut [
        Command::new("dpkg-deb").arg("--fsys-tarfile").arg(deb),
        Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&unpacked)
            .arg("./boot"),
    ])
    .with_context(|| format!("unpacking /boot of {}", deb.display()))?;
    let boot = unpacked.join("boot");
    let image = fs::read_dir(&boot)
        .with_context(|| format!("listing {}", boot.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .ok_or_else(|| anyhow!("{} has no boot/vmlinuz-*", deb.display()))?;
    fs::rename(&image, vmlinuz)
        .with_context(|| format!("moving {} to {}", image.display(), vmlinuz.display()))?;
    fs::remove_dir_all(&unpacked).with_context(|| format!("removing {}", unpacked.display()))?;
    fs::remove_file(deb).with_context(|| format!("removing {}", deb.display()))
}

/// Debian release names (and aliases) a mirror entry of the host serves;
/// other repositories (third-party ones, security) hold no kernels of
/// other suites.
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// One `deb` entry of the host's apt sources.
#[derive(Debug, PartialEq)]
struct SourceEntry {
    uris: Vec<String>,
    suites: Vec<String>,
    components: Vec<String>,
}

impl SourceEntry {
    /// Whether this is the Debian archive proper (main, a release suite,
    /// not -security), over http(s).
    fn is_debian_archive(&self) -> bool {
        let release = |suite: &String| {
            let base = suite.split('-').next().unwrap_or("");
            DEBIAN_SUITES.contains(&base) && !suite.ends_with("-security")
        };
        self.components.iter().any(|c| c == "main")
            && !self.suites.is_empty()
            && self.suites.iter().all(release)
            && self.uris.iter().any(|u| is_http(u))
    }
}

fn is_http(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// The Debian mirror the host's apt uses, from
/// `/etc/apt/sources.list.d/*.sources` (deb822) or the one-line lists.
fn host_mirror() -> Result<String> {
    let mut entries = Vec::new();
    let parts = Path::new("/etc/apt/sources.list.d");
    if let Ok(dir) = fs::read_dir(parts) {
        let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in &files {
            let text = || fs::read_to_string(file).unwrap_or_default();
            match file.extension().and_then(|e| e.to_str()) {
                Some("sources") => entries.extend(parse_deb822(&text())),
                Some("list") => entries.extend(parse_one_line(&text())),
                _ => {}
            }
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        entries.extend(parse_one_line(&text));
    }
    entries
        .iter()
        .filter(|e| e.is_debian_archive())
        .find_map(|e| e.uris.iter().find(|u| is_http(u)))
        .map(|uri| uri.trim_end_matches('/').to_owned())
        .ok_or_else(|| {
            anyhow!(
                "no Debian archive (suite bookworm, trixie, ..., component main, http URI) \
                 in the host's apt sources (/etc/apt/sources.list.d/*.sources, \
                 /etc/apt/sources.list); the kernels are fetched from that mirror"
            )
        })
}

/// `deb` stanzas of a deb822 `.sources` file, skipping `Enabled: no`.
fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    deb822_stanzas(text)
        .iter()
        .filter_map(|fields| {
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or("", |(_, v)| v.as_str())
            };
            let words = |name: &str| -> Vec<String> {
                field(name).split_whitespace().map(str::to_owned).collect()
            };
            let is_deb = words("types").iter().any(|t| t == "deb");
            if !is_deb || field("enabled").eq_ignore_ascii_case("no") {
                return None;
            }
            Some(SourceEntry {
                uris: words("uris"),
                suites: words("suites"),
                components: words("components"),
            })
        })
        .collect()
}

/// The stanzas of a deb822 file as (lower-case field name, value) lists;
/// continuation lines (leading blank) join their field's value.
fn deb822_stanzas(text: &str) -> Vec<Vec<(String, String)>> {
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some(fields) = stanzas.last_mut() else {
            continue;
        };
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    stanzas.retain(|fields| !fields.is_empty());
    stanzas
}

/// `deb` lines of a one-line-style `sources.list`.
fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            // Options in brackets may contain spaces: skip to the `]`.
            let rest = match rest.strip_prefix('[') {
                Some(options) => options.split_once(']')?.1,
                None => rest,
            };
            let mut words = rest.split_whitespace().map(str::to_owned);
            let uri = words.next()?;
            let suite = words.next()?;
            Some(SourceEntry {
                uris: vec![uri],
                suites: vec![suite],
                components: words.collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_picks_the_archive_not_security_nor_disabled() {
        let text = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n\
                    Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n\n\
                    Types: deb deb-src\nEnabled: no\nURIs: http://other.example/debian\n\
                    Suites: trixie\nComponents: main\n\n\n\
                    Types: deb\nURIs: http://cont.example/debian\nSuites: sid\n\
                    \x20experimental-not-a-release\nComponents: main\n";
        let entries = parse_deb822(text);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].suites, ["sid", "experimental-not-a-release"]);
        let archives: Vec<_> = entries.iter().filter(|e| e.is_debian_archive()).collect();
        assert_eq!(archives.len(), 1);
        assert_eq!(archives[0].uris, ["http://mirror.example/debian"]);
    }

    #[test]
    fn one_line_sources_with_options_and_third_party_repos() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] https://download.example/linux/debian bookworm stable\n\
                    deb-src http://mirror.example/debian bookworm main\n\
                    deb http://mirror.example/debian/ bookworm main contrib\n";
        let entries = parse_one_line(text);
        assert_eq!(entries.len(), 2);
        assert!(!entries[0].is_debian_archive(), "component stable only");
        assert!(entries[1].is_debian_archive());
        assert_eq!(entries[1].components, ["main", "contrib"]);
    }

    #[test]
    fn metapackage_depends_resolves_to_the_image() {
        let show = "Package: linux-image-cloud-amd64\nVersion: 6.12.95-1~bpo12+1\n\
                    Depends: linux-image-6.12.95+deb12-cloud-amd64 (= 6.12.95-1~bpo12+1)\n\
                    Description: Linux for x86-64 cloud\n";
        assert_eq!(
            image_dependency(show).as_deref(),
            Some("linux-image-6.12.95+deb12-cloud-amd64")
        );
        assert_eq!(image_dependency("Package: x\n"), None);
    }
}
