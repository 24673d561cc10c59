//! Code the derive macros must accept, compiled and run as an ordinary test: it shares
//! the crate's test build instead of a trybuild project of its own (which would build
//! `factum` and its dependencies a second time, fully, where the compile-fail cases
//! only need them checked).

mod allowed_attributes;
mod full_domain;
mod struct_command_and_custom_fns;
