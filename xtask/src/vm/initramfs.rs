//! The guests' initramfs: busybox, the tracer and the smoke suite's peers
//! (nginx, curl, redis, openssl, bpftool) with every shared library `ldd`
//! lists, the few /etc files they read, `/init` and the smoke suite.
//!
//! Files keep their host paths, and symlinks on the way are copied as
//! symlinks (merged /usr: `/lib -> usr/lib`), so each program finds its
//! libraries where its loader and `ldconfig -p` say they are. That matters
//! for the tracer: it hooks OpenSSL in the libssl `ldconfig -p` names.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::{symlink, PermissionsExt as _},
    path::{Component, Path, PathBuf},
    process::Command,
};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{guest, pipeline, shown};
use crate::run_checked;

/// Host programs the guest runs, each with its libraries. The tracer is
/// added from `--tracer`. `ldconfig` is there because the tracer asks
/// `ldconfig -p` where libssl is; `setpriv` drops `CAP_SYS_RESOURCE` for the
/// memlock check.
const PROGRAMS: &[&str] = &[
    "/bin/busybox",
    "/usr/sbin/nginx",
    "/usr/bin/curl",
    "/usr/bin/redis-server",
    "/usr/bin/redis-cli",
    "/usr/bin/openssl",
    "/usr/sbin/bpftool",
    "/sbin/ldconfig",
    "/usr/bin/setpriv",
];

/// Host files copied as they are: openssl's configuration (`openssl req`).
const FILES: &[&str] = &["/usr/lib/ssl/openssl.cnf"];

/// Where the tracer lives in the guest (smoke.sh's default).
const GUEST_TRACER: &str = "usr/bin/tracer";

/// Accounts nginx's `user nobody nogroup` needs, and name lookups by files.
const ETC: &[(&str, &str)] = &[
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
    ),
    ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    (
        "etc/nsswitch.conf",
        "passwd: files\ngroup: files\nhosts: files\n",
    ),
    ("etc/hosts", "127.0.0.1 localhost\n"),
];

const INIT: &str = include_str!("../../vm/init");

/// Builds `target/vm-cache/initramfs.cpio.gz` with `tracer` in it.
pub fn build(tracer: &Path, cache: &Path, keep: bool) -> Result<PathBuf> {
    let root = cache.join("initramfs-root");
    let archive = cache.join("initramfs.cpio.gz");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    populate(&root, tracer).with_context(|| format!("filling {}", root.display()))?;
    pack(&root, &archive)?;
    let bytes = fs::metadata(&archive)
        .with_context(|| format!("reading {}", archive.display()))?
        .len();
    eprintln!(
        "xtask: initramfs {} ({:.1} MiB)",
        shown(&archive),
        bytes as f64 / f64::from(1 << 20)
    );
    if keep {
        eprintln!("xtask: keeping its tree in {}", shown(&root));
    } else {
        fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    Ok(archive)
}

fn populate(root: &Path, tracer: &Path) -> Result<()> {
    for dir in ["proc", "sys", "dev", "run", "root", "tmp", "var/tmp"] {
        fs::create_dir_all(root.join(dir)).with_context(|| format!("creating /{dir}"))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))
        .context("chmod /tmp")?;
    let mut libraries = BTreeSet::new();
    for program in PROGRAMS {
        copy_in(root, Path::new(program))?;
        libraries.extend(shared_libraries(Path::new(program))?);
    }
    strip_debug(tracer, &root.join(GUEST_TRACER))?;
    libraries.extend(shared_libraries(tracer)?);
    for library in &libraries {
        copy_in(root, library)?;
    }
    for file in FILES {
        copy_in(root, Path::new(file))?;
    }
    for (path, text) in ETC {
        write(root, path, text, 0o644)?;
    }
    write(root, "init", INIT, 0o755)?;
    for (name, text) in guest::SMOKE_FILES {
        write(root, &format!("smoke/{name}"), text, 0o755)?;
    }
    library_cache(root, &libraries)
}

/// `ld.so.cache` for the directories the libraries landed in, made by the
/// host's `ldconfig` for the tree: the tracer runs `ldconfig -p`.
fn library_cache(root: &Path, libraries: &BTreeSet<PathBuf>) -> Result<()> {
    let dirs: BTreeSet<String> = libraries
        .iter()
        .filter_map(|lib| lib.parent().map(|d| format!("{}\n", d.display())))
        .collect();
    write(
        root,
        "etc/ld.so.conf",
        &dirs.into_iter().collect::<String>(),
        0o644,
    )?;
    // -X: only the cache; the links are already the host's.
    run_checked(Command::new("ldconfig").arg("-X").arg("-r").arg(root))
        .context("making the guest's ld.so.cache")
}

/// Absolute paths of the shared libraries (and the loader) `ldd` lists for
/// `program`; none for a static program.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .with_context(|| format!("starting ldd {}", program.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {}: {}", program.display(), stderr.trim());
    }
    parse_ldd(&stdout).map_err(|line| anyhow!("ldd {}: {line}", program.display()))
}

/// Library paths of `ldd` output; `Err(line)` for a library not found.
fn parse_ldd(stdout: &str) -> std::result::Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in stdout.lines() {
        if line.contains("=> not found") {
            return Err(line.trim().to_owned());
        }
        // "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no path.
        paths.extend(
            line.split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    Ok(paths)
}

/// Copies the host's `path` to the same path under `root`, recreating the
/// symlinks met on the way (in directories and the file itself) and
/// copying what they point to as well.
fn copy_in(root: &Path, path: &Path) -> Result<()> {
    copy_in_bounded(root, path, 0).with_context(|| format!("copying {}", path.display()))
}

/// As [`copy_in`]; `depth` counts the symlinks followed, against loops.
fn copy_in_bounded(root: &Path, path: &Path, depth: u32) -> Result<()> {
    if depth > 40 {
        bail!("too many levels of symbolic links");
    }
    let path = normalize(path);
    let mut prefix = PathBuf::from("/");
    let mut rest = path.components().skip(1).peekable();
    while let Some(component) = rest.next() {
        prefix.push(component);
        let meta = fs::symlink_metadata(&prefix)
            .with_context(|| format!("reading {}", prefix.display()))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&prefix)
                .with_context(|| format!("reading the link {}", prefix.display()))?;
            let inside = under(root, &prefix);
            if fs::symlink_metadata(&inside).is_err() {
                make_parent(&inside)?;
                symlink(&target, &inside)
                    .with_context(|| format!("linking {}", inside.display()))?;
            }
            let mut resolved = prefix.parent().unwrap_or(Path::new("/")).join(&target);
            resolved.extend(rest);
            return copy_in_bounded(root, &resolved, depth + 1);
        }
        if rest.peek().is_none() && !meta.is_dir() {
            return copy_file(&prefix, &under(root, &prefix));
        }
    }
    fs::create_dir_all(under(root, &path)).with_context(|| format!("creating {}", path.display()))
}

/// `path` with `.` and `..` resolved lexically (symlinks are handled by the
/// caller, one component at a time).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Host path `path` (absolute) inside `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn make_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))
        }
        None => Ok(()),
    }
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        return Ok(());
    }
    make_parent(to)?;
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// Copies the tracer without its debug info: the release profile keeps
/// line tables (some 60 MB), which would triple the archive the guest
/// unpacks under emulation. Symbols stay, so backtraces keep names.
fn strip_debug(from: &Path, to: &Path) -> Result<()> {
    make_parent(to)?;
    run_checked(
        Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(to)
            .arg(from),
    )
    .with_context(|| format!("copying {} without debug info", from.display()))
}

fn write(root: &Path, path: &str, text: &str, mode: u32) -> Result<()> {
    let path = root.join(path);
    make_parent(&path)?;
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// `find | cpio -o -H newc | gzip`: the format the kernel unpacks, every
/// file owned by root.
fn pack(root: &Path, archive: &Path) -> Result<()> {
    let out =
        fs::File::create(archive).with_context(|| format!("creating {}", archive.display()))?;
    pipeline(&mut [
        Command::new("find")
            .current_dir(root)
            .args([".", "-print0"]),
        Command::new("cpio").current_dir(root).args([
            "--null",
            "--create",
            "--format=newc",
            "--owner=0:0",
            "--quiet",
        ]),
        Command::new("gzip").arg("-6").stdout(out),
    ])
    .with_context(|| format!("packing {} into {}", root.display(), archive.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_and_loader_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f01)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f02)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libssl.so.3"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(
            normalize(Path::new("/usr/lib/../lib64/./ld.so")),
            Path::new("/usr/lib64/ld.so")
        );
        assert_eq!(normalize(Path::new("/../bin")), Path::new("/bin"));
    }

    #[test]
    fn copy_in_recreates_symlinked_directories_and_files() {
        let scratch = std::env::temp_dir().join(format!("xtask-vm-test-{}", std::process::id()));
        let host = scratch.join("host");
        let root = scratch.join("root");
        fs::create_dir_all(host.join("usr/lib")).unwrap();
        fs::write(host.join("usr/lib/libx.so.1.2"), "elf").unwrap();
        symlink("libx.so.1.2", host.join("usr/lib/libx.so.1")).unwrap();
        symlink("usr/lib", host.join("lib")).unwrap();

        copy_in(&root, &host.join("lib/libx.so.1")).unwrap();

        let inside = under(&root, &host);
        assert_eq!(
            fs::read_link(inside.join("lib")).unwrap(),
            Path::new("usr/lib")
        );
        assert_eq!(
            fs::read_link(inside.join("usr/lib/libx.so.1")).unwrap(),
            Path::new("libx.so.1.2")
        );
        assert_eq!(
            fs::read_to_string(inside.join("lib/libx.so.1")).unwrap(),
            "elf"
        );
        fs::remove_dir_all(&scratch).unwrap();
    }
}
