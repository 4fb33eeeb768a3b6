//! cgroups as targets (`--cgroup`, `--container`): finding the cgroup v2
//! hierarchy, resolving a container id to its cgroup, listing a subtree's
//! cgroups and processes, and naming a process's container and pod.
//!
//! The kernel side looks a process up by the v2 cgroup id
//! `bpf_get_current_cgroup_id()` returns; on 64-bit kernels since 5.5 that
//! id is the inode number of the cgroup's directory, so a subtree's ids are
//! read with `stat`.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// `statfs` magic of the cgroup v2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// Deeper than any runtime nests (Kubernetes uses 5 levels).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("no cgroup v2 filesystem is mounted (none in /proc/self/mountinfo); --cgroup and --container need one")]
    NoCgroup2,
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(std::io::Error),
    #[error("--cgroup {arg}: not a cgroup v2 directory (cgroup2 is mounted at {mount})")]
    NotACgroup { arg: String, mount: String },
    #[error(
        "--container {0}: a container id is hexadecimal (docker ps, crictl ps, podman ps show it)"
    )]
    NotAContainerId(String),
    #[error("--container {id}: no cgroup under {mount} belongs to a container with this id")]
    NoSuchContainer { id: String, mount: String },
    #[error("--container {id}: ambiguous, it starts {count} container ids ({examples}); give more of it")]
    AmbiguousContainer {
        id: String,
        count: usize,
        examples: String,
    },
    #[error("--cgroup subtrees hold more than {0} cgroups; trace smaller subtrees")]
    TooMany(usize),
}

/// The mounted cgroup v2 hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup2 {
    mount: PathBuf,
}

impl Cgroup2 {
    /// The first cgroup2 mount in `/proc/self/mountinfo` (`/sys/fs/cgroup`
    /// on a pure v2 system, `/sys/fs/cgroup/unified` on a hybrid one).
    pub fn find() -> Result<Self, CgroupError> {
        let info = fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::MountInfo)?;
        cgroup2_mount(&info)
            .map(|mount| Cgroup2 { mount })
            .ok_or(CgroupError::NoCgroup2)
    }

    pub fn at(mount: PathBuf) -> Self {
        Cgroup2 { mount }
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// `--cgroup ARG`: a directory of the cgroup2 filesystem, given as its
    /// full path or as the path `/proc/PID/cgroup` shows (relative to the
    /// mount, e.g. `/system.slice/nginx.service`).
    pub fn resolve(&self, arg: &Path) -> Result<PathBuf, CgroupError> {
        let candidates = [
            arg.to_path_buf(),
            self.mount.join(arg.strip_prefix("/").unwrap_or(arg)),
        ];
        candidates
            .into_iter()
            .filter_map(|path| path.canonicalize().ok())
            .find(|path| path.starts_with(&self.mount) && is_cgroup2_dir(path))
            .ok_or_else(|| CgroupError::NotACgroup {
                arg: arg.display().to_string(),
                mount: self.mount.display().to_string(),
            })
    }

    /// `--container ID`: the cgroup of the container whose id starts with
    /// `id`, in the layouts of docker (`docker-ID.scope`, `docker/ID`),
    /// containerd (`cri-containerd-ID.scope`), CRI-O (`crio-ID.scope`) and
    /// podman (`libpod-ID.scope`). Where a container's cgroup has nested
    /// ones (podman's `container`), the outermost.
    pub fn find_container(&self, id: &str) -> Result<PathBuf, CgroupError> {
        let wanted = id.to_ascii_lowercase();
        if wanted.is_empty() || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CgroupError::NotAContainerId(id.to_owned()));
        }
        // Container id → its outermost cgroup.
        let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
        walk(&self.mount, 0, &mut |dir| {
            let Some(full) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(container_id_of_component)
            else {
                return;
            };
            if full.starts_with(&wanted) {
                let entry = found
                    .entry(full.to_owned())
                    .or_insert_with(|| dir.to_path_buf());
                if dir.components().count() < entry.components().count() {
                    *entry = dir.to_path_buf();
                }
            }
        });
        let count = found.len();
        let mut matches = found.into_iter();
        match (matches.next(), count) {
            (Some((_, path)), 1) => Ok(path),
            (None, _) => Err(CgroupError::NoSuchContainer {
                id: id.to_owned(),
                mount: self.mount.display().to_string(),
            }),
            (Some((first, _)), _) => Err(CgroupError::AmbiguousContainer {
                id: id.to_owned(),
                count,
                examples: std::iter::once(first)
                    .chain(matches.map(|(full, _)| full))
                    .take(3)
                    .map(|full| full[..12].to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

fn is_cgroup2_dir(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: all-zero is a valid `statfs`.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer.
    let ok = unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) } == 0;
    ok && stat.f_type == CGROUP2_SUPER_MAGIC && path.is_dir()
}

/// The mount point of the first `cgroup2` line of a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount_point = before.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(octal) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(octal);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Calls `visit` on `dir` and every directory below it, to [`MAX_DEPTH`].
fn walk(dir: &Path, depth: usize, visit: &mut impl FnMut(&Path)) {
    visit(dir);
    if depth == MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return; // removed meanwhile
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), depth + 1, visit);
        }
    }
}

/// The 64-hex container id a cgroup directory name carries, if any.
fn container_id_of_component(name: &str) -> Option<&str> {
    let name = name.strip_suffix(".scope").unwrap_or(name);
    // Conmon's and the like are the runtime's helpers, not the container.
    if name.contains("conmon") {
        return None;
    }
    let id = name.rsplit(['-', ':']).next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The traced subtrees: their cgroups by v2 id, kept current.
#[derive(Debug, Default)]
pub struct CgroupTargets {
    roots: Vec<PathBuf>,
    known: BTreeMap<u64, PathBuf>,
}

/// What changed since the last [`CgroupTargets::refresh`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CgroupChanges {
    pub added: Vec<(u64, PathBuf)>,
    pub removed: Vec<u64>,
}

impl CgroupTargets {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        CgroupTargets {
            roots,
            known: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Lists the subtrees again: cgroups made since are added, removed ones
    /// dropped. More than `limit` cgroups is an error (nothing changes).
    pub fn refresh(&mut self, limit: usize) -> Result<CgroupChanges, CgroupError> {
        let mut now: BTreeMap<u64, PathBuf> = BTreeMap::new();
        for root in &self.roots {
            walk(root, 0, &mut |dir| {
                if let Ok(meta) = fs::metadata(dir) {
                    now.insert(meta.ino(), dir.to_path_buf());
                }
            });
        }
        if now.len() > limit {
            return Err(CgroupError::TooMany(limit));
        }
        let changes = CgroupChanges {
            added: now
                .iter()
                .filter(|(id, _)| !self.known.contains_key(id))
                .map(|(id, path)| (*id, path.clone()))
                .collect(),
            removed: self
                .known
                .keys()
                .filter(|id| !now.contains_key(id))
                .copied()
                .collect(),
        };
        self.known = now;
        Ok(changes)
    }

    /// The processes in the subtrees now (`cgroup.procs` of each cgroup).
    pub fn processes(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .known
            .values()
            .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
            .flat_map(|procs| {
                procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// Where a process sits in the cgroup v2 hierarchy (`0::PATH` of
/// `/proc/PID/cgroup`), if it is still there.
pub fn cgroup_path_of(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// `container.id`: the innermost 64-hex id of a cgroup path.
pub fn container_id(cgroup_path: &str) -> Option<&str> {
    cgroup_path.rsplit('/').find_map(container_id_of_component)
}

/// `k8s.pod.uid`: the `pod<UID>` a kubelet names a pod's cgroup with
/// (`kubepods-burstable-pod<UID with _>.slice` with the systemd driver,
/// `pod<UID>` with cgroupfs).
pub fn pod_uid(cgroup_path: &str) -> Option<String> {
    cgroup_path.split('/').find_map(|component| {
        let component = component.strip_suffix(".slice").unwrap_or(component);
        let at = component.rfind("pod")?;
        let uid = component[at + 3..].replace('_', "-");
        is_uuid(&uid).then_some(uid)
    })
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn finds_the_cgroup2_mount_of_a_hybrid_and_a_pure_system() {
        let hybrid = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(cgroup2_mount(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        let none = "22 1 8:1 / / rw - ext4 /dev/sda1 rw";
        assert_eq!(cgroup2_mount(none), None);
        let spaced = r"36 24 0:30 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw";
        assert_eq!(
            cgroup2_mount(spaced),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
    }

    #[test]
    fn names_the_container_of_each_runtime_layout() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_7988_a1b2_c3d4e5f60718.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1f2e3d4c_5b6a_7988_a1b2_c3d4e5f60718.slice/crio-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/kubepods/burstable/pod1f2e3d4c-5b6a-7988-a1b2-c3d4e5f60718/{ID}"),
        ] {
            assert_eq!(container_id(&path), Some(ID), "{path}");
        }
        assert_eq!(
            container_id(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        assert_eq!(container_id("/system.slice/nginx.service"), None);
        assert_eq!(
            container_id("/user.slice/user-0.slice/session-3.scope"),
            None
        );
    }

    #[test]
    fn names_the_pod_of_both_kubelet_drivers() {
        let uid = "1f2e3d4c-5b6a-7988-a1b2-c3d4e5f60718";
        assert_eq!(
            pod_uid(&format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_7988_a1b2_c3d4e5f60718.slice/cri-containerd-{ID}.scope")).as_deref(),
            Some(uid)
        );
        assert_eq!(
            pod_uid(&format!("/kubepods/besteffort/pod{uid}/{ID}")).as_deref(),
            Some(uid)
        );
        assert_eq!(pod_uid(&format!("/system.slice/docker-{ID}.scope")), None);
        assert_eq!(pod_uid("/kubepods/podnot-a-uid"), None);
    }

    /// A directory removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tree(dirs: &[&str]) -> (TempDir, Cgroup2) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = TempDir(
            std::env::temp_dir().join(format!("tracer-unit-cgroup-{}-{n}", std::process::id())),
        );
        let _ = fs::remove_dir_all(root.path());
        fs::create_dir_all(root.path()).unwrap();
        for dir in dirs {
            fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let cgroups = Cgroup2::at(root.path().to_path_buf());
        (root, cgroups)
    }

    #[test]
    fn a_container_id_prefix_finds_its_outermost_cgroup() {
        let other = "3f4e99999c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
        let (root, cgroups) = tree(&[
            &format!("machine.slice/libpod-{ID}.scope/container"),
            &format!("machine.slice/libpod-conmon-{ID}.scope"),
            &format!("system.slice/docker-{other}.scope"),
        ]);
        assert_eq!(
            cgroups.find_container(&ID[..12]).unwrap(),
            root.path().join(format!("machine.slice/libpod-{ID}.scope"))
        );
        assert_eq!(
            cgroups.find_container(&ID.to_ascii_uppercase()).unwrap(),
            root.path().join(format!("machine.slice/libpod-{ID}.scope"))
        );
        assert!(matches!(
            cgroups.find_container("3f4e"),
            Err(CgroupError::AmbiguousContainer { count: 2, .. })
        ));
        assert!(matches!(
            cgroups.find_container("abc123"),
            Err(CgroupError::NoSuchContainer { .. })
        ));
        assert!(matches!(
            cgroups.find_container("nginx"),
            Err(CgroupError::NotAContainerId(_))
        ));
    }

    #[test]
    fn refresh_reports_cgroups_made_and_removed_since() {
        let (root, _) = tree(&["app/a", "app/b", "other"]);
        let mut targets = CgroupTargets::new(vec![root.path().join("app")]);
        let first = targets.refresh(100).unwrap();
        assert_eq!(first.added.len(), 3, "app, app/a, app/b");
        assert!(first.removed.is_empty());
        assert_eq!(targets.refresh(100).unwrap(), CgroupChanges::default());
        fs::create_dir(root.path().join("app/a/c")).unwrap();
        let removed_id = fs::metadata(root.path().join("app/b")).unwrap().ino();
        fs::remove_dir(root.path().join("app/b")).unwrap();
        let changes = targets.refresh(100).unwrap();
        assert_eq!(
            changes.added,
            [(
                fs::metadata(root.path().join("app/a/c")).unwrap().ino(),
                root.path().join("app/a/c")
            )]
        );
        assert_eq!(changes.removed, [removed_id]);
        assert!(matches!(targets.refresh(2), Err(CgroupError::TooMany(2))));
    }

    #[test]
    fn a_path_outside_the_cgroup2_mount_is_refused() {
        let (root, cgroups) = tree(&["app"]);
        // A temporary directory is no cgroup2 filesystem.
        let err = cgroups.resolve(&root.path().join("app")).unwrap_err();
        assert!(
            err.to_string().contains("not a cgroup v2 directory"),
            "{err}"
        );
    }
}
