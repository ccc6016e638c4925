//! The OAuth pages, a side wing of the request path: the connect flow a user's browser goes
//! through (`/oauth/start`, the provider's consent, `/oauth/callback`) and the pages it shows.
//! What they stand on lives lower: connect links in `token::link`, provider metadata in
//! `provider`, templates in `config::templates`.

pub mod callback;
pub mod flow;
pub mod pages;
mod record;
