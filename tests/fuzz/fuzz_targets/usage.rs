//! The usage scanner and the response-id reader on any response bytes, whole and cut into frames:
//! how a body is cut never changes the usage or the id read from it, nor what a client is passed;
//! only a stream the gateway asked usage for is rewritten, and then only shorter.
//!
//! The first byte picks the content type (bit 0: a stream), whether the usage is the gateway's to
//! hide (bit 1), and the frame size (the other bits, plus one); the rest is the body.
#![no_main]

use bytes::Bytes;
use customs::owners::IdReader;
use customs::route::valid_response_id;
use customs::usage::{Usage, UsageScanner};
use libfuzzer_sys::fuzz_target;

/// Below the scanners' own caps (1 MiB lines, 64 KiB searched for an id), past which a cut may
/// change what is read by design.
const MAX_BODY: usize = 64 * 1024;

fn frames(body: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    body.chunks(size.max(1))
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, body)) = data.split_first() else { return };
    if body.len() > MAX_BODY {
        return;
    }
    let sse = head & 1 == 1;
    let hide = head & 2 == 2;
    let size = usize::from(head >> 2) + 1;
    let content_type: &[u8] = if sse { b"text/event-stream; charset=utf-8" } else { b"application/json" };

    let whole = scan(content_type, hide, frames(body, body.len()));
    let cut = scan(content_type, hide, frames(body, size));
    assert_eq!(whole, cut, "cut into {size}-byte frames: {body:?}");
    let (passed, _) = whole;
    if sse && hide {
        assert!(passed.len() <= body.len(), "hiding usage made the stream longer");
        if !body.windows(5).any(|w| w == b"usage") {
            assert_eq!(passed, body, "a stream that never mentions usage was rewritten");
        }
    } else {
        assert_eq!(passed, body, "a body whose usage is not hidden was rewritten");
    }

    let whole = read_id(sse, frames(body, body.len()));
    let cut = read_id(sse, frames(body, size));
    if let Some(id) = whole.as_deref().or(cut.as_deref()) {
        assert!(valid_response_id(id), "{id:?}");
    }
    // A JSON body's id is read from its first frame when it leads, else from the whole body by
    // serde_json, which refuses what the quick read of a leading id does not look at (a repeated
    // id, a broken tail): only a stream's id is the same however it is cut.
    if sse {
        assert_eq!(whole, cut, "id cut into {size}-byte frames: {body:?}");
    }
});

/// What the client is passed (with what is left at the end), and the usage read.
fn scan<'a>(content_type: &[u8], hide: bool, frames: impl Iterator<Item = &'a [u8]>) -> (Vec<u8>, Option<Usage>) {
    let mut scanner = UsageScanner::for_content_type(Some(content_type), hide);
    let mut passed = Vec::new();
    for frame in frames {
        passed.extend_from_slice(&scanner.pass(Bytes::copy_from_slice(frame)));
    }
    if let Some(rest) = scanner.rest() {
        passed.extend_from_slice(&rest);
    }
    (passed, scanner.finish())
}

/// The one id read, by frames then at the end; a second would be bound to another owner.
fn read_id<'a>(sse: bool, frames: impl Iterator<Item = &'a [u8]>) -> Option<Box<str>> {
    let mut reader = IdReader::new(sse);
    let mut found: Vec<Box<str>> = frames.filter_map(|f| reader.read(f)).collect();
    found.extend(reader.finish());
    assert!(found.len() <= 1, "more than one id: {found:?}");
    found.pop()
}
