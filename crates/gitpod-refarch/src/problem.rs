//! The problems [`crate::validate`] and the spec loader report: [`Problem`] (a field
//! path and a message), [`ValidationErrors`] (all of them at once) and [`Warning`]
//! (a note about a valid spec). A leaf module: the spec, the loader, the certificate
//! checks and the validator all use it, and it uses none of them.

use std::fmt;

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The field path, in the spec's own (camelCase) names; empty for the whole spec.
    pub path: String,
    /// What is wrong and, where possible, what would be right.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub(crate) Vec<Problem>);

impl ValidationErrors {
    pub(crate) fn one(p: Problem) -> Self {
        ValidationErrors(vec![p])
    }

    /// The problems, in spec order.
    pub fn problems(&self) -> &[Problem] {
        &self.0
    }

    /// Whether any problem concerns `path` exactly.
    pub fn has_path(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.path == path)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid spec ({} problem(s))", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// A non-fatal note about a valid spec, shown in the plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The field path.
    pub path: String,
    /// The note.
    pub message: String,
}
