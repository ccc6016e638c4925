//! Phase `authorize`: which connector this request uses, and whether its allowed domains
//! cover the target. Names the caller gives must agree; without one, exactly one usable
//! connector must cover the URL, or the request is ambiguous rather than guessed.

use std::sync::Arc;

use super::error::PolicyError;
use super::headers::Asked;
use crate::caller::Caller;
use crate::config::{Config, Connector};
use crate::domains::{Pattern, Target};

/// The chosen connector and the pattern that allows the target.
#[derive(Debug)]
pub struct Decision<'a> {
    pub index: usize,
    pub connector: &'a Arc<Connector>,
    pub pattern: &'a Pattern,
}

/// Where a connector name came from, for messages.
fn named(asked: &Asked<'_>, caller: &Caller, gateway_name: Option<&str>) -> Vec<(&'static str, String)> {
    let mut names = Vec::new();
    let header = |v: Option<&http::HeaderValue>| v.and_then(|v| v.to_str().ok()).map(|s| s.trim().to_string());
    if let Some(n) = header(asked.connector) {
        names.push(("X-Tollgate-Connector", n));
    }
    if let Some(n) = header(asked.tool) {
        names.push(("X-Tollgate-Tool", n));
    }
    if let Some(n) = &caller.username {
        names.push(("the proxy username", n.clone()));
    }
    if let Some(n) = &caller.claimed_connector {
        names.push(("the JWT connector claim", n.clone()));
    }
    if let Some(n) = gateway_name {
        names.push(("the gateway path", n.to_string()));
    }
    names
}

/// The connector the request names, if any: every name given (headers, proxy username, JWT
/// claim, gateway path) must resolve, and all must name the same connector.
fn named_connector(
    asked: &Asked<'_>,
    caller: &Caller,
    gateway_name: Option<&str>,
    config: &Config,
) -> Result<Option<usize>, PolicyError> {
    let mut chosen: Option<(usize, &'static str, String)> = None;
    for (source, name) in named(asked, caller, gateway_name) {
        let index = config.resolve_name(&name).ok_or_else(|| PolicyError::Unknown(name.clone()))?;
        match &chosen {
            Some((first, first_source, first_name)) if *first != index => {
                return Err(PolicyError::Ambiguous(format!(
                    "{first_source} names {first_name} but {source} names {name}; name one connector"
                )));
            }
            Some(_) => {}
            None => chosen = Some((index, source, name)),
        }
    }
    Ok(chosen.map(|(index, _, _)| index))
}

/// Chooses the connector and checks that its allowed domains cover the target.
pub fn authorize<'a>(
    asked: &Asked<'_>,
    caller: &Caller,
    gateway_name: Option<&str>,
    target: &Target,
    config: &'a Config,
) -> Result<Decision<'a>, PolicyError> {
    let chosen = named_connector(asked, caller, gateway_name, config)?;
    // Only refusals name the URL: built when needed, not on every request.
    let url = || target.without_query();
    if let Some(index) = chosen {
        let connector = &config.connectors[index];
        if !caller.may_use(index) {
            return Err(PolicyError::Forbidden(connector.name.clone()));
        }
        let pattern = config
            .allow_list
            .covering_for(index, target)
            .ok_or_else(|| PolicyError::NotCovered { url: url(), scope: format!("connector {}", connector.name) })?;
        return Ok(Decision { index, connector, pattern });
    }
    let mut usable = config.allow_list.covering_iter(target).filter(|c| caller.may_use(c.owner));
    let Some(first) = usable.next() else {
        return Err(PolicyError::NotCovered { url: url(), scope: "any connector this caller may use".into() });
    };
    // Another owner covering the same URL makes it ambiguous; more patterns of one owner do not.
    let Some(second) = usable.find(|c| c.owner != first.owner) else {
        return Ok(Decision { index: first.owner, connector: &config.connectors[first.owner], pattern: first.pattern });
    };
    let mut owners = vec![first.owner, second.owner];
    for covered in usable {
        if !owners.contains(&covered.owner) {
            owners.push(covered.owner);
        }
    }
    let names: Vec<&str> = owners.iter().map(|i| config.connectors[*i].name.as_str()).collect();
    Err(PolicyError::Ambiguous(format!(
        "{} is covered by connectors {}; name one with X-Tollgate-Connector or the proxy username",
        url(),
        names.join(", ")
    )))
}

/// Whether a `CONNECT` to `target` (host and port, no path yet) may open a tunnel: by the same
/// naming rules as [`authorize`], a connector the caller may use (the named one, if any) must
/// cover the host and port. Each request inside the tunnel then goes through [`authorize`].
pub fn authorize_connect(
    asked: &Asked<'_>,
    caller: &Caller,
    target: &Target,
    config: &Config,
) -> Result<(), PolicyError> {
    let chosen = named_connector(asked, caller, None, config)?;
    if let Some(index) = chosen {
        if !caller.may_use(index) {
            return Err(PolicyError::Forbidden(config.connectors[index].name.clone()));
        }
    }
    let covered = config.allow_list.owners_for_authority(target);
    if covered.iter().any(|owner| caller.may_use(*owner) && chosen.is_none_or(|c| c == *owner)) {
        return Ok(());
    }
    Err(PolicyError::NotCovered {
        url: target.authority().to_string(),
        scope: chosen
            .map_or("any connector this caller may use".into(), |i| format!("connector {}", config.connectors[i].name)),
    })
}
