//! Name normalization: one canonical spelling per name, so that only real differences are left for
//! fuzzy matching to weigh.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// A name as the matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NormalizedName {
    /// The words that count as evidence, in their original order.
    pub tokens: Vec<String>,
    /// Canonical legal-entity forms that were set aside (`CO`, `LTD`, `LLC`, `GMBH`, …). They are
    /// shown for the record but never scored: every second company on the list is a `CO LTD`.
    pub legal_forms: Vec<String>,
}

impl fmt::Display for NormalizedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tokens.join(" "))?;
        if !self.legal_forms.is_empty() {
            write!(f, " [{}]", self.legal_forms.join(" "))?;
        }
        Ok(())
    }
}

/// Normalizes a name for matching: uppercase; compatibility forms folded (NFKC: full-width letters,
/// ligatures); diacritics dropped (NFKD, combining marks removed: `Zéphyra` = `ZEPHYRA`);
/// apostrophes dropped; other punctuation splits words; dotted or spaced initialisms joined
/// (`O.L.D.S.` = `O L D S` = `OLDS`); a few abbreviations expanded (`INTL`, `TECH`); legal-entity
/// forms canonicalized and set aside; particles (`THE`, `OF`, `AND`, …) dropped.
///
/// Legal forms and particles are only set aside while something else is left, so a name made of
/// nothing but them (`Company Limited`) keeps its words and can still match itself exactly.
pub fn normalize(name: &str) -> NormalizedName {
    let words = split_words(&fold(name));
    let tokens = join_single_letters(words).into_iter().map(expand_abbreviation).collect();
    let (tokens, legal_forms) = set_aside_legal_forms(tokens);
    let tokens = drop_particles(tokens);
    NormalizedName { tokens, legal_forms }
}

/// Uppercase, compatibility-folded, diacritic-free text with the letters NFKD does not decompose
/// spelled out, so that transliterations written with or without them compare equal.
fn fold(name: &str) -> String {
    // ASCII is its own NFKD and NFKC, has no combining marks and none of the letters below; most
    // names are ASCII, and this spares them the Unicode tables.
    if name.is_ascii() {
        return name
            .bytes()
            .filter(|b| !is_apostrophe(char::from(*b)))
            .map(|b| char::from(b.to_ascii_uppercase()))
            .collect();
    }
    let upper: String = name.to_uppercase().chars().filter(|c| !is_apostrophe(*c)).collect();
    let mut out = String::with_capacity(upper.len());
    for c in upper.nfkd().filter(|c| !is_combining_mark(*c)).nfkc() {
        match c {
            'Ø' => out.push('O'),
            'Đ' | 'Ð' => out.push('D'),
            'Ł' => out.push('L'),
            'Ħ' => out.push('H'),
            'Æ' => out.push_str("AE"),
            'Œ' => out.push_str("OE"),
            'Þ' => out.push_str("TH"),
            'ẞ' => out.push_str("SS"),
            'ı' => out.push('I'),
            _ => out.push(c),
        }
    }
    out
}

/// Apostrophes join rather than split (`O'BRIEN` = `OBRIEN`), as transliterations often omit them.
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{02BC}' | '`' | '\u{00B4}')
}

/// Splits on everything that is not a letter or digit. Dots are looked at first: a word made of
/// single characters between dots is an initialism and is joined (`L.L.C.` = `LLC`); any other dot
/// separates words (`CO.LTD` = `CO LTD`).
fn split_words(folded: &str) -> Vec<String> {
    let mut words = Vec::new();
    let spaced: String =
        folded.chars().map(|c| if c.is_alphanumeric() || c == '.' || c == '&' { c } else { ' ' }).collect();
    for raw in spaced.split_whitespace() {
        // `&` is a word of its own (`SMITH&SONS`), dropped later as a particle.
        for part in raw.split_inclusive('&') {
            let (body, amp) = match part.strip_suffix('&') {
                Some(body) => (body, true),
                None => (part, false),
            };
            let pieces: Vec<&str> = body.split('.').filter(|p| !p.is_empty()).collect();
            let initialism = pieces.len() >= 2 && pieces.iter().all(|p| p.chars().count() == 1);
            if initialism {
                words.push(pieces.concat());
            } else {
                words.extend(pieces.into_iter().map(str::to_owned));
            }
            if amp {
                words.push("AND".to_owned());
            }
        }
    }
    words
}

/// Joins runs of two or more single letters (`O L D S` = `OLDS`, `S A` = `SA`): spaced initialisms
/// are the same name as dotted ones, and a lone letter carries almost no evidence anyway.
fn join_single_letters(words: Vec<String>) -> Vec<String> {
    let single = |w: &str| {
        let mut chars = w.chars();
        matches!((chars.next(), chars.next()), (Some(c), None) if c.is_alphabetic())
    };
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut run = String::new();
    for word in words {
        if single(&word) {
            run.push_str(&word);
            continue;
        }
        if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
        out.push(word);
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// Abbreviations that list entries and customers spell both ways.
fn expand_abbreviation(word: String) -> String {
    let full = match word.as_str() {
        "INTL" => "INTERNATIONAL",
        "TECH" | "TECHNOLOGIES" => "TECHNOLOGY",
        "SVCS" => "SERVICES",
        "HLDGS" => "HOLDINGS",
        "GRP" => "GROUP",
        "MFG" => "MANUFACTURING",
        "CENTRE" => "CENTER",
        "UNIV" => "UNIVERSITY",
        "INST" => "INSTITUTE",
        "ASSN" => "ASSOCIATION",
        "MGMT" => "MANAGEMENT",
        "BROS" => "BROTHERS",
        _ => return word,
    };
    full.to_owned()
}

/// Multi-word legal forms and their canonical spelling, longest first so that
/// `PUBLIC LIMITED COMPANY` is `PLC` and not `PUBLIC` + `LTD CO`.
const LEGAL_PHRASES: &[(&[&str], &[&str])] = &[
    (&["GESELLSCHAFT", "MIT", "BESCHRANKTER", "HAFTUNG"], &["GMBH"]),
    (&["PUBLIC", "JOINT", "STOCK", "COMPANY"], &["PJSC"]),
    (&["OPEN", "JOINT", "STOCK", "COMPANY"], &["OJSC"]),
    (&["CLOSED", "JOINT", "STOCK", "COMPANY"], &["CJSC"]),
    (&["JOINT", "STOCK", "COMPANY"], &["JSC"]),
    (&["LIMITED", "LIABILITY", "COMPANY"], &["LLC"]),
    (&["LIMITED", "LIABILITY", "PARTNERSHIP"], &["LLP"]),
    (&["PUBLIC", "LIMITED", "COMPANY"], &["PLC"]),
    (&["SOCIEDAD", "ANONIMA"], &["SA"]),
    (&["SOCIETE", "ANONYME"], &["SA"]),
    (&["KABUSHIKI", "KAISHA"], &["KK"]),
    (&["PRIVATE", "LIMITED"], &["PVT", "LTD"]),
    (&["LIMITED", "PARTNERSHIP"], &["LP"]),
    (&["SDN", "BHD"], &["SDN", "BHD"]),
    (&["SA", "DE", "CV"], &["SA", "DE", "CV"]),
];

/// Legal forms recognised in any position: none of them is plausibly part of a brand.
fn legal_anywhere(word: &str) -> Option<&'static str> {
    Some(match word {
        "LTD" | "LIMITED" | "LIMITD" => "LTD",
        "CO" | "COMPANY" => "CO",
        "INC" | "INCORPORATED" => "INC",
        "CORP" | "CORPORATION" => "CORP",
        "LLC" => "LLC",
        "LLP" => "LLP",
        "PLC" => "PLC",
        "GMBH" => "GMBH",
        _ => return None,
    })
}

/// Short legal forms that could also be initials or words (`AS`, `AB`, `SE`), so they are only
/// taken as legal forms at the end of a name, where they sit in practice.
fn legal_suffix(word: &str) -> Option<&'static str> {
    const SUFFIXES: &[&str] = &[
        "LTDA", "LP", "AG", "KG", "SA", "SAS", "SARL", "SRL", "SPA", "BV", "NV", "AB", "AS", "ASA", "OY", "OYJ", "KK",
        "PTE", "PTY", "PVT", "BHD", "JSC", "OJSC", "CJSC", "PJSC", "OOO", "ZAO", "OAO", "PAO", "FZE", "FZCO", "FZC",
        "SE",
    ];
    if word == "AKTIENGESELLSCHAFT" {
        return Some("AG");
    }
    legal_anywhere(word).or_else(|| SUFFIXES.iter().copied().find(|s| *s == word))
}

/// Legal forms written before the name (`OOO ROMASHKA`, `PT BANK …`).
fn legal_prefix(word: &str) -> Option<&'static str> {
    const PREFIXES: &[&str] = &["OOO", "ZAO", "OAO", "PAO", "AO", "TOO", "PT", "JSC", "OJSC", "CJSC", "PJSC", "LLC"];
    PREFIXES.iter().copied().find(|p| *p == word)
}

/// Strips legal forms from the end (phrases first, then single words, repeatedly: `CO., LTD.`),
/// then from the start, then unambiguous ones anywhere. Returns `(evidence, legal forms)`.
fn set_aside_legal_forms(tokens: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut core = tokens.clone();
    let mut suffix: Vec<String> = Vec::new();
    'strip: loop {
        for (phrase, canonical) in LEGAL_PHRASES {
            if core.len() > phrase.len() && ends_with_words(&core, phrase) {
                core.truncate(core.len() - phrase.len());
                suffix.splice(0..0, canonical.iter().map(|w| (*w).to_owned()));
                continue 'strip;
            }
        }
        match core.last().and_then(|w| legal_suffix(w)) {
            Some(canonical) if core.len() > 1 => {
                core.pop();
                suffix.insert(0, canonical.to_owned());
            }
            _ => break,
        }
    }
    let mut prefix: Vec<String> = Vec::new();
    'prefix: loop {
        for (phrase, canonical) in LEGAL_PHRASES {
            if core.len() > phrase.len() && starts_with_words(&core, phrase) {
                core.drain(..phrase.len());
                prefix.extend(canonical.iter().map(|w| (*w).to_owned()));
                continue 'prefix;
            }
        }
        match core.first().and_then(|w| legal_prefix(w)) {
            Some(canonical) if core.len() > 1 => {
                core.remove(0);
                prefix.push(canonical.to_owned());
            }
            _ => break,
        }
    }
    let mut legal = prefix;
    let mut evidence = Vec::with_capacity(core.len());
    for word in core {
        match legal_anywhere(&word) {
            Some(canonical) => legal.push(canonical.to_owned()),
            None => evidence.push(word),
        }
    }
    legal.extend(suffix);
    if evidence.is_empty() {
        // Nothing but legal forms: matching on them would be matching on nothing, so keep the
        // words as written; they only ever equal a list name made of the same words.
        return (tokens, Vec::new());
    }
    (evidence, legal)
}

fn ends_with_words(words: &[String], phrase: &[&str]) -> bool {
    words.len() >= phrase.len() && words[words.len() - phrase.len()..].iter().zip(phrase).all(|(a, b)| a == b)
}

fn starts_with_words(words: &[String], phrase: &[&str]) -> bool {
    words.len() >= phrase.len() && words.iter().zip(phrase).all(|(a, b)| a == b)
}

/// Words that connect a name rather than identify it, in the languages common on the list.
fn is_particle(word: &str) -> bool {
    matches!(word, "THE" | "OF" | "AND" | "FOR" | "DE" | "DES" | "DU" | "LA" | "LE" | "LES" | "ET" | "UND")
}

fn drop_particles(tokens: Vec<String>) -> Vec<String> {
    if tokens.iter().all(|t| is_particle(t)) {
        return tokens;
    }
    tokens.into_iter().filter(|t| !is_particle(t)).collect()
}

/// Words so common in company names that sharing them says little about identity; they weigh a
/// quarter of what their list frequency alone would give (see the module docs).
pub(super) fn is_generic(word: &str) -> bool {
    matches!(
        word,
        "TRADING"
            | "TRADE"
            | "TRADERS"
            | "GROUP"
            | "INTERNATIONAL"
            | "GLOBAL"
            | "TECHNOLOGY"
            | "DATA"
            | "SERVICE"
            | "SERVICES"
            | "SOLUTIONS"
            | "SYSTEMS"
            | "HOLDING"
            | "HOLDINGS"
            | "INDUSTRY"
            | "INDUSTRIES"
            | "INDUSTRIAL"
            | "ENTERPRISE"
            | "ENTERPRISES"
            | "IMPORT"
            | "EXPORT"
            | "INVESTMENT"
            | "INVESTMENTS"
            | "MANAGEMENT"
            | "DEVELOPMENT"
            | "PARTNERS"
            | "BRANCH"
    )
}
