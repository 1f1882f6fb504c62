//! Compiles `country-groups.toml`: named sets of country codes that jurisdictions refer to.

use std::collections::HashMap;

use super::ctx::{Ctx, entry, valid_country, valid_name};
use crate::config::error::Source;
use crate::config::raw::CountryGroupsFile;

pub(super) fn compile_groups<'f>(
    ctx: &mut Ctx,
    src: &Source,
    file: &'f CountryGroupsFile,
) -> HashMap<&'f str, Vec<&'f str>> {
    let mut groups = HashMap::new();
    for (i, g) in file.groups.iter().enumerate() {
        let id = g.id.get_ref().as_str();
        let key = entry("groups", i, id);
        if !valid_name(id) {
            ctx.err(src, Some(g.id.span()), format!("{key}.id"), "must be printable ASCII without spaces");
        }
        let mut list = Vec::new();
        for (c, country) in g.countries.iter().enumerate() {
            if valid_country(country.get_ref()) {
                list.push(country.get_ref().as_str());
            } else {
                ctx.err(
                    src,
                    Some(country.span()),
                    format!("{key}.countries[{c}]"),
                    format!("{:?} is not an ISO 3166-1 alpha-2 code (two capital letters)", country.get_ref()),
                );
            }
        }
        if groups.insert(id, list).is_some() {
            ctx.err(src, Some(g.id.span()), format!("{key}.id"), format!("group {id:?} is defined twice"));
        }
    }
    groups
}
