//! OAuth: the connect flow and its pages, provider templates, and the signed connect links
//! handed out in `connection_required` and `reauth_required` errors.

pub mod callback;
pub mod flow;
pub mod form;
pub mod link;
pub mod pages;
pub mod provider;
pub mod templates;
