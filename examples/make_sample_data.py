"""Write a realistic sample dataset in the AmazonTitles-1.3MM trn.json format (JSON lines).

Each line: {"uid", "title", "content", "target_ind", "target_rel"}. Descriptions follow one
learnable style: an opening sentence naming the product, two or three feature sentences and a
closing line. A few deliberately bad records (empty title, whitespace description, exact
duplicates) exercise ftdiag's filtering. Seeded and stdlib only:

    python examples/make_sample_data.py --out src/ftdiag/samples/amazon_titles_sample.json --n 1000
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

CATEGORIES: dict[str, dict[str, list[str]]] = {
    "kitchen": {
        "brands": ["Cookwell", "Pantrix", "Ferro & Co", "Kitchora", "Home Chef"],
        "items": ["Frying Pan", "Chef Knife", "Cutting Board", "Saucepan", "Mixing Bowl Set",
                  "Coffee Grinder", "Tea Kettle", "Measuring Cups", "Baking Sheet", "Colander"],
        "attrs": ["Non-Stick", "Stainless Steel", "Cast Iron", "Bamboo", "Ceramic", "Copper"],
        "sizes": ["8 inch", "10 inch", "12 inch", "2 Quart", "3 Piece", "5 Piece"],
        "uses": ["everyday cooking", "weeknight dinners", "baking at home", "meal prep"],
        "features": ["heats evenly without hot spots", "cleans up quickly by hand or in the "
                     "dishwasher", "has a comfortable handle that stays cool",
                     "resists scratches and stains", "works on gas, electric and induction hobs",
                     "stores neatly in a small kitchen"],
    },
    "electronics": {
        "brands": ["Voltix", "Sonara", "Nexcell", "Auralink", "Brightway"],
        "items": ["Wireless Earbuds", "Bluetooth Speaker", "USB-C Charger", "Power Bank",
                  "HDMI Cable", "Wireless Mouse", "Mechanical Keyboard", "Webcam",
                  "Phone Stand", "Smart Plug"],
        "attrs": ["Compact", "Fast Charging", "Noise Cancelling", "Waterproof", "Ultra Slim",
                  "Rechargeable"],
        "sizes": ["10000mAh", "20W", "65W", "6 ft", "1080p", "2 Pack"],
        "uses": ["work and travel", "the home office", "gaming sessions", "daily commutes"],
        "features": ["connects in seconds and stays paired", "delivers clear, stable "
                     "performance", "runs for hours on a single charge",
                     "fits easily into a bag or pocket", "works with phones, tablets and "
                     "laptops", "is protected against overheating and short circuits"],
    },
    "clothing": {
        "brands": ["Northloom", "Urban Thread", "Kestrel", "Maple & Pine", "Driftwear"],
        "items": ["T-Shirt", "Hoodie", "Rain Jacket", "Chino Pants", "Wool Socks",
                  "Running Shorts", "Flannel Shirt", "Beanie", "Fleece Vest", "Leggings"],
        "attrs": ["Organic Cotton", "Lightweight", "Breathable", "Water Resistant", "Merino",
                  "Stretch"],
        "sizes": ["Men's Medium", "Women's Small", "Unisex Large", "Kids 8-10", "Men's XL",
                  "Women's Medium"],
        "uses": ["everyday wear", "outdoor adventures", "the gym", "cool evenings"],
        "features": ["feels soft against the skin", "keeps its shape wash after wash",
                     "lets air flow to keep you comfortable", "has a relaxed, modern fit",
                     "is stitched to last through daily wear", "layers easily with the rest "
                     "of your wardrobe"],
    },
    "books": {
        "brands": ["Lantern Press", "Bluebird Books", "Harbor House", "Quill & Ink",
                   "Oakleaf Publishing"],
        "items": ["Cookbook", "Mystery Novel", "Travel Guide", "Children's Picture Book",
                  "Field Guide to Birds", "Poetry Collection", "History of Rome",
                  "Gardening Handbook", "Sketching Workbook", "Science Fiction Anthology"],
        "attrs": ["Illustrated", "Hardcover", "Paperback", "Pocket Edition", "Revised",
                  "Large Print"],
        "sizes": ["2nd Edition", "240 Pages", "Volume 1", "Anniversary Edition", "320 Pages",
                  "Collector's Edition"],
        "uses": ["curious readers", "quiet afternoons", "gift giving", "young learners"],
        "features": ["is written in a warm and engaging voice", "includes clear illustrations "
                     "on nearly every page", "is organised into short, easy chapters",
                     "offers practical tips you can use right away", "is printed on durable, "
                     "high quality paper", "has been praised by readers of all ages"],
    },
    "outdoors": {
        "brands": ["Trailpeak", "Summit Gear", "Wildroot", "Cascade Outfitters", "Ridgeline"],
        "items": ["Camping Tent", "Sleeping Bag", "Hiking Backpack", "Water Bottle",
                  "Headlamp", "Trekking Poles", "Camp Stove", "Hammock", "Cooler",
                  "Folding Chair"],
        "attrs": ["Ultralight", "Insulated", "Weatherproof", "Collapsible", "Heavy Duty",
                  "Packable"],
        "sizes": ["2 Person", "40L", "750 ml", "4 Season", "1 Person", "32 oz"],
        "uses": ["weekend camping trips", "long hikes", "backyard evenings", "festival season"],
        "features": ["sets up in minutes without tools", "stands up to wind and rain",
                     "packs down small and light", "is made from tough, recycled materials",
                     "keeps you comfortable from dusk to dawn", "comes with a handy carry bag"],
    },
    "beauty": {
        "brands": ["Lumiere", "Pure Fern", "Velvet Bloom", "Aquae", "Botaniq"],
        "items": ["Face Moisturizer", "Shampoo", "Lip Balm", "Sunscreen Lotion", "Body Wash",
                  "Hair Dryer", "Makeup Brush Set", "Hand Cream", "Facial Cleanser",
                  "Nail Care Kit"],
        "attrs": ["Fragrance Free", "Hydrating", "Vegan", "Travel Size", "Gentle",
                  "Professional"],
        "sizes": ["50 ml", "250 ml", "3 Pack", "SPF 30", "12 Piece", "100 ml"],
        "uses": ["daily routines", "sensitive skin", "busy mornings", "a relaxing self-care night"],
        "features": ["absorbs quickly without feeling greasy", "is made with plant based "
                     "ingredients", "is dermatologist tested and gentle on skin",
                     "leaves a fresh, clean finish", "lasts for weeks with daily use",
                     "comes in recyclable packaging"],
    },
}
ADJECTIVES = ["reliable", "well made", "versatile", "practical", "thoughtfully designed"]
CLOSINGS = ["A great choice for {use}.", "Perfect for {use}.", "An easy pick for {use}."]


def make_record(rng: random.Random, uid: int) -> dict[str, object]:
    """One clean product record in the trn.json shape."""
    cat = rng.choice(sorted(CATEGORIES))
    c = CATEGORIES[cat]
    brand, item, attr = rng.choice(c["brands"]), rng.choice(c["items"]), rng.choice(c["attrs"])
    size = rng.choice(c["sizes"])
    title = rng.choice([f"{brand} {attr} {item}, {size}", f"{brand} {item} - {attr}, {size}",
                        f"{attr} {item} by {brand} ({size})"])
    feats = rng.sample(c["features"], rng.choice([2, 3]))
    use = rng.choice(c["uses"])
    sentences = [f"The {brand} {item} is a {rng.choice(ADJECTIVES)} {attr.lower()} "
                 f"{item.lower()} made for {use}."]
    sentences += [f"It {f}." if i == 0 else f"This {item.lower()} also {f}."
                  for i, f in enumerate(feats)]
    sentences.append(rng.choice(CLOSINGS).format(use=use))
    return {"uid": f"B{uid:09d}", "title": title, "content": " ".join(sentences),
            "target_ind": sorted(rng.sample(range(1, 2000), 3)),
            "target_rel": [1.0, 1.0, 1.0]}


def make_dataset(n: int = 1000, seed: int = 0) -> list[dict[str, object]]:
    """`n` records: mostly clean, a few bad ones (empty title, blank content, duplicates)."""
    rng = random.Random(seed)
    records = [make_record(rng, 1_000_000 + i) for i in range(n)]
    n_bad = max(n // 100, 1)
    for i in range(n_bad):
        bad_at = rng.randrange(len(records))
        records[bad_at] = {**records[bad_at], "title": "" if i % 2 == 0 else "   "}
    for _ in range(n_bad):
        bad_at = rng.randrange(len(records))
        records[bad_at] = {**records[bad_at], "content": rng.choice(["", "  ", "\n"])}
    for _ in range(n_bad):
        dup = dict(records[rng.randrange(len(records))])
        records.insert(rng.randrange(len(records)), dup)
    return records[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parents[1] / "src" / "ftdiag" / "samples"
                    / "amazon_titles_sample.json")
    ap.add_argument("--n", type=int, default=1000, help="number of records (≤ 2000 committed)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    lines = [json.dumps(r, ensure_ascii=False) for r in make_dataset(args.n, args.seed)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {len(lines)} records to {args.out}")


if __name__ == "__main__":
    main()
