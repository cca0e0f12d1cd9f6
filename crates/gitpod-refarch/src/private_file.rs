//! Files only their owner may read: the state file, the installer's secret manifests,
//! kubeconfigs.

/// Write `contents` to `path` atomically, readable by the owner only.
pub fn write_private(path: &std::path::Path, contents: &[u8]) -> crate::error::Result<()> {
    use std::io::Write;
    let io = |what: &str, e: std::io::Error| {
        crate::error::Error::new(
            crate::error::ErrorKind::State,
            format!("cannot {what} {}", path.display()),
        )
        .with_source(e)
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| io("open", e))?;
    f.write_all(contents).map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("sync", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io("replace", e))?;
    Ok(())
}
