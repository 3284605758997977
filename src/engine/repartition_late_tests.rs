//! Late records between instances: a person's or the decisions' task
//! writes a record that came behind one it has written at its last
//! position, so its readers take it (a position going back is refused)
//! and release it after what was written there, as one service applies a
//! record later than `kafka.max_out_of_order` when it comes.

use super::tests::{key, one_of_each, LAYOUT};
use super::*;

/// Every person task's marks at `at` to `topic`'s `partition`, read.
fn mark_all(r: &mut Reader, writers: &mut [Writer], topic: Topic, partition: u32, at: SortKey) {
    for w in writers {
        for m in w.marks(at).unwrap().into_iter().filter(|m| m.topic == topic && m.partition == partition) {
            r.receive(&m.value).unwrap();
        }
    }
}

#[test]
fn a_late_record_takes_its_tasks_last_position() {
    let (_, step) = one_of_each().swap_remove(0);
    let mut persons: Vec<Writer> = (0..LAYOUT.persons).map(|p| Writer::new(Upstream { task: Task::Person, partition: p }, LAYOUT)).collect();
    let on_time = persons[1].fact(key(5, 5), step.clone()).unwrap();
    let other = persons[0].fact(key(4, 0), step.clone()).unwrap();
    // Event time 3: behind the 5 this task has written.
    let late = persons[1].fact(key(3, 3), step.clone()).unwrap();
    assert_eq!(persons[1].late(), 1);
    assert_eq!(persons[0].late(), 0);
    let (topic, partition) = (on_time.topic, on_time.partition);
    assert_eq!((late.topic, late.partition), (topic, partition), "one key, one partition");
    assert_eq!(decode(&late.value).unwrap().at, key(5, 5), "placed at the task's last position");

    // Read in another order than written: the writers' streams are apart.
    let mut r = Reader::new(topic, partition, LAYOUT);
    for o in [&other, &on_time, &late] {
        r.receive(&o.value).unwrap();
    }
    // A mark behind the last position is placed there too: the reader
    // would refuse it otherwise.
    let behind = persons[1].marks(key(4, 9)).unwrap();
    assert!(behind.iter().all(|m| decode(&m.value).unwrap().at == key(5, 5)));
    for m in behind.into_iter().filter(|m| m.topic == topic && m.partition == partition) {
        r.receive(&m.value).unwrap();
    }
    mark_all(&mut r, &mut persons[..1], topic, partition, key(6, 0));
    mark_all(&mut r, &mut persons[2..], topic, partition, key(6, 0));
    let mut decisions: Vec<Writer> = (0..LAYOUT.decisions).map(|p| Writer::new(Upstream { task: Task::Decisions, partition: p }, LAYOUT)).collect();
    mark_all(&mut r, &mut decisions, topic, partition, key(9, 9));
    let out: Vec<SortKey> = std::iter::from_fn(|| r.pop()).map(|(at, _)| at).collect();
    assert_eq!(out, vec![key(4, 0), key(5, 5), key(5, 5)], "the late fact after the one written at its place");
    assert_eq!(persons[1].late(), 1, "marks are not counted as late records");

    // A resumed writer places late records where the original would have.
    let stored = postcard::to_allocvec(&persons[1].checkpoint()).unwrap();
    let mut resumed = Writer::resume(Upstream { task: Task::Person, partition: 1 }, LAYOUT, postcard::from_bytes(&stored).unwrap()).unwrap();
    let again = resumed.fact(key(1, 1), step.clone()).unwrap();
    assert_eq!(decode(&again.value).unwrap().at, key(5, 5));
    assert_eq!(resumed.late(), 1, "counted since the writer was made");
}

/// The decisions task reads a topic of its own and places late decisions
/// the same way; the key tasks write in the order facts reach them, and
/// one of theirs going back stays refused (`a_writer_going_back_is_refused`).
#[test]
fn only_the_tasks_reading_input_topics_place_late_records() {
    let facts = one_of_each();
    let (_, decision) = facts.iter().find(|(t, _)| *t == Task::Decisions).cloned().unwrap();
    let mut d = Writer::new(Upstream { task: Task::Decisions, partition: 1 }, LAYOUT);
    d.fact(key(8, 8), decision.clone()).unwrap();
    let late = d.fact(key(2, 2), decision).unwrap();
    assert_eq!(decode(&late.value).unwrap().at, key(8, 8));
    assert_eq!(d.late(), 1);

    let (_, died) = facts[8].clone();
    let mut c = Writer::new(Upstream { task: Task::Custodian, partition: 0 }, LAYOUT);
    c.fact(key(8, 8), died.clone()).unwrap();
    let back = c.fact(key(2, 2), died).unwrap();
    assert_eq!(decode(&back.value).unwrap().at, key(2, 2), "written as it came, for its reader to refuse");
    assert_eq!(c.late(), 0);
}
