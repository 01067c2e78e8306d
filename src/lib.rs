//! hookguard
pub use hookguard_core::*;
