//! Unit tests of src/attribute.rs.
use super::*;
