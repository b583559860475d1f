//! A draft of the rules and templates, tried without touching the files forewarn serves: the
//! set on disk with one template file replaced, in a scratch copy of the templates folder.
//! Saving checks it before writing; a simulation replays history through it.

use std::path::{Path, PathBuf};

use crate::authoring::Authoring;
use crate::config::Settings;

/// The rules and templates on disk with one template file replaced by a draft, in a scratch
/// copy of the templates folder that lives as long as this does.
pub(super) struct DraftSet {
    settings: Settings,
    scratch: tempfile::TempDir,
    /// The real templates folder, for problems.
    real: PathBuf,
}

impl DraftSet {
    /// The set on disk with `template/file` reading `source`.
    pub(super) fn with_template(
        settings: &Settings,
        template: &str,
        file: &str,
        source: &str,
    ) -> std::io::Result<DraftSet> {
        let scratch = tempfile::tempdir()?;
        copy_dir(&settings.paths.templates, scratch.path())?;
        std::fs::write(scratch.path().join(template).join(file), source)?;
        let mut trial = settings.clone();
        trial.paths.templates = scratch.path().to_path_buf();
        Ok(DraftSet {
            settings: trial,
            scratch,
            real: settings.paths.templates.clone(),
        })
    }

    /// Loads and checks the set as `run` would; problems name the real files.
    pub(super) fn load(&self) -> Result<Authoring, Vec<String>> {
        crate::authoring::load(&self.settings).map_err(|problems| {
            let scratch = self.scratch.path().display().to_string();
            let real = self.real.display().to_string();
            problems
                .into_iter()
                .map(|p| p.replace(&scratch, &real))
                .collect()
        })
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
