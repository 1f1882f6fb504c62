#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;

/// The header and the three synthetic rows of regulation.md §4.5, verbatim.
const SAMPLE: &str = include_str!("testdata/sample.csv");
/// The list the example config ships with: the same file.
const EXAMPLE_LIST: &str = include_str!("../../config/screening-list.csv");

const ZEPHYRA: usize = 0;
const NORTHWIND: usize = 1;
const OBSIDIAN: usize = 2;

fn sample() -> Screener {
    Screener::new(parse_csl_csv(SAMPLE).unwrap())
}

/// The sample with line `line` (1-based) rewritten by `edit`.
fn edited(line: usize, edit: impl Fn(&str) -> String) -> String {
    SAMPLE.lines().enumerate().map(|(i, l)| if i + 1 == line { edit(l) } else { l.to_owned() } + "\n").collect()
}

/// The best score of `entry` against `query`, 0 when the entry is not a candidate at all.
fn score(screener: &Screener, query: &str, entry: usize) -> f64 {
    screener.screen(&[query], 0.0).into_iter().find(|h| h.entry == entry).map_or(0.0, |h| h.score)
}

fn entry(name: &str, alt_names: &[&str]) -> ListEntry {
    ListEntry {
        id: name.to_owned(),
        source: "test".to_owned(),
        entry_type: "Entity".to_owned(),
        name: name.to_owned(),
        alt_names: alt_names.iter().map(|a| (*a).to_owned()).collect(),
        programs: Vec::new(),
        countries: Vec::new(),
        line: 0,
    }
}

// === parsing ===

#[test]
fn parse_sample_reads_every_field_the_screener_uses() {
    let entries = parse_csl_csv(SAMPLE).unwrap();
    assert_eq!(entries.len(), 3);

    let z = &entries[ZEPHYRA];
    assert_eq!(z.id, "cd60226dd1d51f992e05cee454238219fc9f254af05302da9760a808");
    assert_eq!(z.source, "Entity List (EL) - Bureau of Industry and Security");
    assert_eq!(z.entry_type, "");
    assert_eq!(z.name, "ZEPHYRA QUANTUM COMPUTE CO., LTD.");
    assert_eq!(z.alt_names, ["Zephyra QC", "Zephyra Quantum Computing Company Limited"]);
    assert!(z.programs.is_empty());
    assert_eq!(z.countries, ["CN"]);
    assert_eq!(z.line, 2);

    let n = &entries[NORTHWIND];
    assert_eq!(n.source, "Military End User (MEU) List - Bureau of Industry and Security");
    assert_eq!(n.name, "NORTHWIND AVIONICS RESEARCH INSTITUTE");
    assert_eq!(n.alt_names, ["Northwind ARI"]);
    // The MEU importer writes the country name and then the code; only the code is taken.
    assert_eq!(n.countries, ["CN"]);
    assert_eq!(n.line, 3);

    let o = &entries[OBSIDIAN];
    assert_eq!(o.id, "99999");
    assert_eq!(o.entry_type, "Entity");
    assert_eq!(o.programs, ["CYBER2", "SYNTHETIC"]);
    assert_eq!(o.alt_names, ["OBSIDIAN LANTERN", "O.L.D.S. LLC"]);
    assert_eq!(o.countries, ["IR"]);
    assert_eq!(o.line, 4);
}

#[test]
fn parse_example_config_list_is_the_synthetic_sample() {
    assert_eq!(EXAMPLE_LIST, SAMPLE);
    assert_eq!(parse_csl_csv(EXAMPLE_LIST).unwrap().len(), 3);
}

#[test]
fn parse_header_only_is_an_empty_list_and_empty_file_is_an_error() {
    let header = SAMPLE.lines().next().unwrap();
    assert_eq!(parse_csl_csv(&format!("{header}\n")).unwrap(), []);
    let err = parse_csl_csv("").unwrap_err();
    assert_eq!(err.to_string(), "line 1: the file is empty; expected the CSL header row");
}

#[test]
fn parse_missing_header_column_names_it() {
    let text = edited(1, |l| l.replace("\"title\",", ""));
    let err = parse_csl_csv(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"line 1, column 7: header has no column "title" (found "addresses" where it belongs)"#
    );
    assert_eq!((err.line(), err.column()), (1, Some(7)));
}

#[test]
fn parse_renamed_header_column_names_it() {
    let text = edited(1, |l| l.replace("\"name\"", "\"full_name\""));
    let err = parse_csl_csv(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"line 1, column 6: header has no column "name" (found "full_name" where it belongs)"#
    );
}

#[test]
fn parse_reordered_and_extra_header_columns_are_errors() {
    let swapped = edited(1, |l| l.replace("\"type\",\"programs\"", "\"programs\",\"type\""));
    let err = parse_csl_csv(&swapped).unwrap_err();
    assert_eq!(err.to_string(), r#"line 1, column 4: header column is "programs", expected "type""#);

    let extra = edited(1, |l| format!("{l},\"risk\""));
    let err = parse_csl_csv(&extra).unwrap_err();
    assert_eq!(err.to_string(), r#"line 1, column 30: header has an extra column "risk" after the 29 CSL columns"#);
}

#[test]
fn parse_wrong_field_count_names_the_line() {
    let text = edited(3, |l| l.replacen("\"\",", "", 1));
    let err = parse_csl_csv(&text).unwrap_err();
    assert_eq!(err.to_string(), "line 3: 28 fields, expected 29");
    assert_eq!((err.line(), err.column()), (3, None));
}

#[test]
fn parse_unterminated_quote_names_line_and_column() {
    // The closing quote of Northwind's name is lost: the field would otherwise swallow the lines
    // after it.
    let text = edited(3, |l| l.replace("INSTITUTE\",", "INSTITUTE,"));
    let err = parse_csl_csv(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 3, column 6 (name): a quote inside a quoted field must be doubled \
         (or the field's closing quote is missing)"
    );
    assert_eq!((err.line(), err.column()), (3, Some(6)));
}

#[test]
fn parse_unterminated_quote_at_end_of_file_is_an_error() {
    let text = SAMPLE.trim_end().strip_suffix('"').unwrap().to_owned();
    let err = parse_csl_csv(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 4, column 29 (ids): quoted field is never closed (the quote runs to the end of the file)"
    );
}

#[test]
fn parse_stray_quotes_are_errors() {
    let undoubled = edited(2, |l| l.replace("Sampletown", "Sample\"town"));
    let err = parse_csl_csv(&undoubled).unwrap_err();
    assert_eq!((err.line(), err.column()), (2, Some(8)));

    let unquoted = edited(4, |l| l.replace("\"99999\",\"Specially", "99\"999,\"Specially"));
    let err = parse_csl_csv(&unquoted).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 4, column 1 (_id): quote inside an unquoted field; quote the field and double the quote"
    );
}

#[test]
fn parse_accepts_minimal_quoting_crlf_and_blank_lines() {
    // What a spreadsheet makes of the file: quotes only where needed, CRLF, a BOM.
    let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    for record in csv::ReaderBuilder::new().has_headers(false).from_reader(SAMPLE.as_bytes()).records() {
        writer.write_record(&record.unwrap()).unwrap();
    }
    let resaved = format!("\u{feff}{}", String::from_utf8(writer.into_inner().unwrap()).unwrap());
    assert!(!resaved.starts_with("\u{feff}\"_id\""), "the writer should not have quoted the header");
    assert_eq!(parse_csl_csv(&resaved).unwrap(), parse_csl_csv(SAMPLE).unwrap());

    let blank = edited(2, |l| format!("\n{l}"));
    let lines: Vec<usize> = parse_csl_csv(&blank).unwrap().iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 4, 5]);
}

#[test]
fn parse_embedded_quotes_and_newlines_in_quoted_fields_are_fine() {
    let text = edited(2, |l| l.replace("SYNTHETIC TEST RECORD", "SYNTHETIC \"\"TEST\"\"\nRECORD"));
    let entries = parse_csl_csv(&text).unwrap();
    assert_eq!(entries[ZEPHYRA].line, 2);
    // The row after a two-line row starts a line later.
    assert_eq!(entries[NORTHWIND].line, 4);
}

#[test]
fn parse_empty_or_unmatchable_name_is_an_error() {
    let empty = edited(3, |l| l.replace("NORTHWIND AVIONICS RESEARCH INSTITUTE", ""));
    let err = parse_csl_csv(&empty).unwrap_err();
    assert_eq!(err.to_string(), "line 3, column 6 (name): name is empty");

    let dashes = edited(4, |l| l.replace("OBSIDIAN LANTERN; O.L.D.S. LLC", "OBSIDIAN LANTERN; --"));
    let err = parse_csl_csv(&dashes).unwrap_err();
    assert_eq!(err.to_string(), r#"line 4, column 23 (alt_names): "--" has no letters or digits to match on"#);
}

// === normalization ===

#[test]
fn normalize_folds_case_diacritics_width_punctuation_and_legal_forms() {
    let cases = [
        ("Zéphyra Quantum-Compute Co., Ltd.", "ZEPHYRA QUANTUM COMPUTE [CO LTD]"),
        ("ZEPHYRA QUANTUM COMPUTE CO., LTD.", "ZEPHYRA QUANTUM COMPUTE [CO LTD]"),
        ("Zephyra Quantum Compute Company Limited", "ZEPHYRA QUANTUM COMPUTE [CO LTD]"),
        ("ＺＥＰＨＹＲＡ Ｑｕａｎｔｕｍ", "ZEPHYRA QUANTUM"),
        ("O.L.D.S. LLC", "OLDS [LLC]"),
        ("O L D S L.L.C.", "OLDS [LLC]"),
        ("Obsidian Lantern Data Services, L.L.C.", "OBSIDIAN LANTERN DATA SERVICES [LLC]"),
        ("Acme Holdings Public Limited Company", "ACME HOLDINGS [PLC]"),
        ("OOO Romashka", "ROMASHKA [OOO]"),
        ("Sampo Oy Ltd", "SAMPO [OY LTD]"),
        // Ambiguous short forms only count at the end.
        ("AS Nordsee Bank A.S.", "AS NORDSEE BANK [AS]"),
        ("Øresund Łódź GmbH", "ORESUND LODZ [GMBH]"),
        ("O'Brien & Sons, Inc.", "OBRIEN SONS [INC]"),
        ("The Bank of Somewhere S.A.", "BANK SOMEWHERE [SA]"),
        ("Intl Tech Corp.", "INTERNATIONAL TECHNOLOGY [CORP]"),
        // Nothing but legal forms: kept as written, so it matches only itself.
        ("Company Limited", "COMPANY LIMITED"),
    ];
    for (name, expected) in cases {
        assert_eq!(normalize(name).to_string(), expected, "{name}");
    }
}

// === word similarity ===

#[test]
fn word_similarity_scales_allowed_edits_with_length() {
    let sim = |a: &str, b: &str| score::word_similarity(a, a.chars().count(), b, b.chars().count());
    assert_eq!(sim("OLDS", "OLDS"), 1.0);
    // Short words are initialisms: one letter makes another company.
    assert_eq!(sim("OLDS", "GOLDS"), 0.0);
    assert_eq!(sim("QC", "QCC"), 0.0);
    assert!(sim("ZEPHIRA", "ZEPHYRA") > 0.9);
    assert!(sim("ZEHPYRA", "ZEPHYRA") > 0.9, "transposition is one edit");
    assert!(sim("AVIONICKS", "AVIONICS") > 0.9);
    // A listed word inside a longer one is not the listed word.
    assert_eq!(sim("NORTHWINDOWS", "NORTHWIND"), 0.0);
    assert_eq!(sim("OBSIDIANITE", "OBSIDIAN"), 0.0);
}

// === matching ===

#[test]
fn screen_spelling_diacritic_order_and_suffix_variants_hit() {
    let screener = sample();
    let variants = [
        "Zephyra Quantum Compute Company Limited",
        "ZEPHYRA QUANTUM COMPUTE CO LTD",
        "ZEPHIRA QUANTUM COMPUTE CO LTD",
        "Zéphyra Quantum-Compute Co., Ltd.",
        "Compute Quantum Zephyra Ltd",
        "ＺＥＰＨＹＲＡ ＱＵＡＮＴＵＭ ＣＯＭＰＵＴＥ",
        "Zephyra Quantum Compute Corporation",
        "Zephyra Quantum Computing Co. Ltd.",
    ];
    for query in variants {
        let hits = screener.screen(&[query], DEFAULT_THRESHOLD);
        assert_eq!(hits.len(), 1, "{query}: {hits:?}");
        assert_eq!(hits[0].entry, ZEPHYRA, "{query}");
    }
    let transliterated = screener.screen(&["ZEPHIRA QUANTUM COMPUTE CO LTD"], DEFAULT_THRESHOLD);
    assert!(transliterated[0].score > 95.0 && transliterated[0].score < 100.0, "{transliterated:?}");
}

#[test]
fn screen_alias_matches_report_the_alias() {
    let screener = sample();
    let olds = screener.screen(&["O.L.D.S. LLC"], DEFAULT_THRESHOLD);
    assert_eq!((olds[0].entry, olds[0].matched.as_str(), olds[0].score), (OBSIDIAN, "O.L.D.S. LLC", 100.0));
    let spaced = screener.screen(&["OLDS, L.L.C."], DEFAULT_THRESHOLD);
    assert_eq!((spaced[0].entry, spaced[0].score), (OBSIDIAN, 100.0));
    let qc = screener.screen(&["Zephyra QC"], DEFAULT_THRESHOLD);
    assert_eq!((qc[0].entry, qc[0].matched.as_str(), qc[0].score), (ZEPHYRA, "Zephyra QC", 100.0));
    let ari = screener.screen(&["Northwind A.R.I."], DEFAULT_THRESHOLD);
    assert_eq!((ari[0].entry, ari[0].matched.as_str()), (NORTHWIND, "Northwind ARI"));
}

#[test]
fn screen_words_written_apart_or_together_hit() {
    let screener = sample();
    assert!(score(&screener, "North Wind Avionics Research Institute", NORTHWIND) >= DEFAULT_THRESHOLD);
    assert!(score(&screener, "Obsidianlantern Data Services", OBSIDIAN) >= DEFAULT_THRESHOLD);
}

#[test]
fn screen_listed_name_inside_a_longer_name_hits() {
    // A branch or subsidiary naming itself after the listed party.
    let screener = sample();
    assert!(score(&screener, "Zephyra Quantum Compute (Shenzhen) Co., Ltd.", ZEPHYRA) >= DEFAULT_THRESHOLD);
}

#[test]
fn screen_names_a_substring_search_would_flag_pass() {
    let screener = sample();
    let passes = [
        // Shares the brand with the alias NORTHWIND ARI but nothing else distinctive.
        "Northwind Traders Inc.",
        // Only the generic words and the legal form in common.
        "Acme Data Services LLC",
        // Listed names inside longer words.
        "Northwindows Trading",
        "Goldsmith Partners",
        "Obsidianite Mining",
        "Colds LLC",
        // Only legal forms in common.
        "Borealis Co., Ltd.",
        "Co., Ltd.",
        "Company Limited",
        "LLC",
    ];
    for query in passes {
        let hits = screener.screen(&[query], REVIEW_THRESHOLD);
        assert!(hits.is_empty(), "{query}: {hits:?}");
    }
    assert_eq!(screener.screen(&["Acme Data Services LLC"], 0.0)[0].score, 25.0);
}

#[test]
fn screen_partial_names_land_in_the_review_band() {
    // Half the distinctive words (OBSIDIAN missing) or two of three (ZEPHYRA missing): not a hit,
    // but a human should look. See the module docs, "Bands".
    let screener = sample();
    for (query, entry) in [("Lantern Data Services LLC", OBSIDIAN), ("Quantum Compute Co., Ltd.", ZEPHYRA)] {
        let s = score(&screener, query, entry);
        assert!((REVIEW_THRESHOLD..DEFAULT_THRESHOLD).contains(&s), "{query}: {s}");
        assert!(screener.screen(&[query], DEFAULT_THRESHOLD).is_empty(), "{query}");
    }
}

#[test]
fn screen_reports_each_entry_once_with_its_best_score_in_range() {
    let screener = sample();
    let names = ["Zephyra Quantum Computing Company Limited", "Zephyra QC Ltd", "Obsidian Lantern", "Northwind Inc."];
    let hits = screener.screen(&names, 0.0);
    let mut entries: Vec<usize> = hits.iter().map(|h| h.entry).collect();
    entries.sort_unstable();
    entries.dedup();
    assert_eq!(entries.len(), hits.len(), "{hits:?}");
    assert!(hits.iter().all(|h| (0.0..=100.0).contains(&h.score)), "{hits:?}");
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "{hits:?}");

    let zephyra = hits.iter().find(|h| h.entry == ZEPHYRA).unwrap();
    assert_eq!(zephyra.score, 100.0);
    assert_eq!(zephyra.query, "Zephyra Quantum Computing Company Limited");
    assert_eq!(zephyra.matched, "Zephyra Quantum Computing Company Limited");
    let northwind = hits.iter().find(|h| h.entry == NORTHWIND).unwrap();
    assert_eq!((northwind.query.as_str(), northwind.matched.as_str()), ("Northwind Inc.", "Northwind ARI"));
}

#[test]
fn screen_evidence_reproduces_the_documented_formula() {
    let screener = sample();
    for query in ["ZEPHIRA QUANTUM COMPUTE (SHENZHEN) CO", "Lantern Data Services LLC", "North Wind ARI Trading"] {
        let hits = screener.screen(&[query], 0.0);
        assert!(!hits.is_empty(), "{query}: the sample list has near names, so there are hits to check");
        for hit in hits {
            assert!(hit.score > 0.0 && hit.evidence.iter().any(|e| e.query.is_some() && e.list.is_some()), "{hit:?}");
            let (mut matched, mut total) = (0.0, 0.0);
            for e in &hit.evidence {
                if e.query.is_some() && e.list.is_some() {
                    matched += 2.0 * e.similarity * e.weight;
                    total += 2.0 * e.weight;
                } else {
                    total += e.weight;
                }
            }
            assert!((100.0 * matched / total - hit.score).abs() < 1e-9, "{hit:?}");
        }
    }
}

#[test]
fn screen_score_does_not_depend_on_which_name_is_listed() {
    let pairs = [
        ("ZEPHYRA QUANTUM COMPUTE", "ZEPHIRA QUANTUM"),
        ("NORTHWIND TRADERS", "NORTH WIND AVIONICS"),
        ("LANTERN DATA SERVICES", "OBSIDIAN LANTERN DATA SERVICES"),
    ];
    for (a, b) in pairs {
        // Both names on the same list, so both directions see the same word weights.
        let screener = Screener::new(vec![entry(a, &[]), entry(b, &[]), entry("UNRELATED FILLER", &[])]);
        let a_to_b = score(&screener, a, 1);
        let b_to_a = score(&screener, b, 0);
        assert!(a_to_b > 0.0 && (a_to_b - b_to_a).abs() < 1e-9, "{a} / {b}: {a_to_b} vs {b_to_a}");
    }
}

#[test]
fn screen_rare_words_outweigh_common_ones() {
    // NOVA is in every entry, ZORBA in one: sharing ZORBA is stronger evidence than sharing NOVA.
    let mut entries: Vec<ListEntry> = ["ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON", "KAPPA"]
        .iter()
        .map(|w| entry(&format!("{w} NOVA"), &[]))
        .collect();
    entries.push(entry("ZORBA NOVA", &[]));
    let screener = Screener::new(entries);
    let shares_rare = score(&screener, "ZORBA PRIME", 6);
    let shares_common = score(&screener, "NOVA PRIME", 6);
    assert!(shares_rare > shares_common + 10.0, "{shares_rare} vs {shares_common}");
}

#[test]
fn screen_common_word_does_not_borrow_a_rare_look_alikes_weight() {
    // NOVAS is in six entries, NOVAX (one edit away) in one: pairing them is worth a NOVAS.
    let mut entries: Vec<ListEntry> = ["ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON", "KAPPA"]
        .iter()
        .map(|w| entry(&format!("{w} NOVAS"), &[]))
        .collect();
    entries.push(entry("ZORBA NOVAX", &[]));
    let screener = Screener::new(entries);
    let hits = screener.screen(&["NOVAS"], 0.0);
    let pair_weight = |entry: usize| {
        let hit = hits.iter().find(|h| h.entry == entry).unwrap();
        hit.evidence.iter().find(|e| e.query.is_some() && e.list.is_some()).unwrap().weight
    };
    assert_eq!(pair_weight(6), pair_weight(0));
    assert!(score(&screener, "NOVAS", 6) < 50.0);
}
