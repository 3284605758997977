//! Names, identity numbers and account numbers for a synthetic district.

use crate::model::id::check_char;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

pub const TOWNSHIPS: [&str; 8] = ["水阳镇", "狸桥镇", "周王镇", "新田镇", "孙埠镇", "黄渡乡", "杨柳铺街道", "金坝街道"];

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "高", "林", "罗",
    "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾", "肖", "田", "董", "袁", "潘", "蒋", "蔡", "余",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀兰", "霞",
    "平", "刚", "桂英", "玉兰", "建国", "建华", "志强", "淑珍", "德明", "长海", "金凤", "桂花", "春生", "国庆", "秋菊",
];
const MINORITY: &[&str] =
    &["阿依古丽·买买提", "买买提·吐尔逊", "古丽米拉·艾力", "热依拉·阿不都", "艾尔肯·热合曼", "努尔兰·哈力克"];

/// Hands out unique people and accounts from one seeded generator.
pub struct People {
    pub rng: ChaCha8Rng,
    ids: HashSet<String>,
    accounts: u64,
}

impl People {
    pub fn new(rng: ChaCha8Rng) -> People {
        People { rng, ids: HashSet::new(), accounts: 0 }
    }

    pub fn name(&mut self) -> String {
        let s = SURNAMES.choose(&mut self.rng).expect("non-empty");
        let g = GIVEN.choose(&mut self.rng).expect("non-empty");
        format!("{s}{g}")
    }

    pub fn minority_name(&mut self) -> String {
        MINORITY.choose(&mut self.rng).expect("non-empty").to_string()
    }

    /// A valid, unique 18-character identity number (宣城市宣州区 codes).
    pub fn id(&mut self) -> String {
        loop {
            let region = ["341802", "341821", "341823"].choose(&mut self.rng).expect("non-empty");
            let year = self.rng.gen_range(1930..=2005);
            let month = self.rng.gen_range(1..=12);
            let day = self.rng.gen_range(1..=28);
            let seq = self.rng.gen_range(0..1000);
            let body = format!("{region}{year:04}{month:02}{day:02}{seq:03}");
            let id = format!("{body}{}", check_char(body.as_bytes()));
            if self.ids.insert(id.clone()) {
                return id;
            }
        }
    }

    /// A unique 19-digit bank card number.
    pub fn account(&mut self) -> String {
        self.accounts += 1;
        let bank = ["6217", "6228", "6230", "6215"].choose(&mut self.rng).expect("non-empty");
        format!("{bank}{:06}{:09}", self.rng.gen_range(0..1_000_000), self.accounts)
    }

    pub fn bank(&mut self) -> &'static str {
        ["宣城农商银行", "中国农业银行", "中国邮政储蓄银行", "中国建设银行"].choose(&mut self.rng).expect("non-empty")
    }
}

const LATIN: &[&str] = &["Mary Wang", "Anna Li", "Ivan Petrov", "Nguyen Thi Lan"];

/// A Latin-script name (a foreign spouse, say).
pub fn latin_name(rng: &mut ChaCha8Rng) -> String {
    LATIN.choose(rng).expect("non-empty").to_string()
}

/// The same name as the bank might print it: spaces, ideographic spaces,
/// other separators, full-width upper-case Latin — all equal after
/// normalisation.
pub fn variant(name: &str, which: usize) -> String {
    if name.is_ascii() {
        return name
            .chars()
            .map(|c| match c {
                ' ' => '\u{3000}',
                c => (c.to_ascii_uppercase() as u32)
                    .checked_sub(0x21)
                    .and_then(|o| char::from_u32(o + 0xFF01))
                    .unwrap_or(c),
            })
            .collect();
    }
    match which % 4 {
        0 if name.contains('·') => name.replace('·', "•"),
        1 if name.contains('·') => name.replace('·', "．"),
        2 => {
            let mut cs = name.chars();
            let first: String = cs.next().into_iter().collect();
            format!("{first}\u{3000}{}", cs.collect::<String>())
        }
        _ => {
            let mut cs = name.chars();
            let first: String = cs.next().into_iter().collect();
            format!(" {first} {} ", cs.collect::<String>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::name::same;
    use crate::model::PersonId;
    use rand::SeedableRng;

    #[test]
    fn ids_are_valid_and_unique() {
        let mut p = People::new(ChaCha8Rng::seed_from_u64(1));
        let ids: Vec<String> = (0..2000).map(|_| p.id()).collect();
        assert!(ids.iter().all(|i| PersonId::parse(i).is_ok()));
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2000);
    }

    #[test]
    fn variants_normalise_to_the_name() {
        for n in ["阿依古丽·买买提", "张秀英", "Mary Wang"] {
            for w in 0..4 {
                assert!(same(n, &variant(n, w)), "{n} {w} {}", variant(n, w));
            }
        }
    }
}
