//! Rescale planning: which old pieces of state each new subtask receives.
//!
//! Planning is pure and metadata only: it reads item counts (and, later, key
//! group ranges), never state bytes, and decodes nothing. Restoring then
//! reads exactly the byte ranges a plan names.
//!
//! * [`operator`]: split / union / broadcast operator state.

pub(crate) mod operator;
