//! OAuth: provider templates and the signed connect links handed out in
//! `connection_required` and `reauth_required` errors.

pub mod link;
pub mod templates;
