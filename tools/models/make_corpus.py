#!/usr/bin/env python3
"""Corpus generator for the tiny-llm.cpp course models (issue 3).

Python standard library only, deterministic from --seed.

Writes ChatML conversations (rendered exactly as the Qwen2.5 chat template in
tokenizer_config.json renders them) that teach the skills the course's chapters
measure, plus raw prose for `generate`:

  arithmetic   "What is 37 + 58?" -> "37 + 58 = 95."  (add, sub, mul; 1-3 digit operands)
  facts        capitals, chemical symbols, planets, days, months, opposites (tables below)
  prose        short stories from a small grammar (raw text, and "Tell me a story" chats)
  tool         Qwen2.5 tool calling: calculator, get_weather (invented data), convert_units,
               plus questions that need no tool
  reading      a few invented passages + a question; the answer copies the right passage
  passkey      a number hidden in filler text, asked for at the end (fits 512 tokens)
  chat         greetings, multi-turn mixes of the above

A held-out test split uses numbers, names, (fact, phrasing) pairs and passkeys that
the training split never contains (decided by a CRC32 of a key, see `held_out`).

Usage:
  python3 tools/models/make_corpus.py --split train --n 1000 --seed 0 --out train.jsonl
  python3 tools/models/make_corpus.py --split test --seed 1234 --out heldout.jsonl   # eval set
  python3 tools/models/make_corpus.py --split train --n 5 --show                     # print samples

Each train record is {"skill": ..., "text": ..., "spans": [[start, end], ...]} where
spans are character ranges whose tokens are trained on (assistant turns incl. <|im_end|>;
the whole text for raw prose). Each test record is {"skill", "messages", "tools",
"answer", "check", ...}; see `make_test_set`.
"""
import argparse
import json
import pathlib
import random
import sys
import zlib

DEFAULT_SYSTEM = "You are a helpful assistant."

# ----------------------------------------------------------------------------------------
# Chat template (Python mirror of CHAT_TEMPLATE; train_tokenizer.py checks they agree)
# ----------------------------------------------------------------------------------------

# The Qwen2.5 template, shared with tools/tokenizer/make_tokenizer_fixtures.py.
CHAT_TEMPLATE = (pathlib.Path(__file__).resolve().parent.parent / "tokenizer" / "qwen2.5_chat_template.jinja").read_text()

TOOLS = [
    {"type": "function", "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression with +, - and *.",
        "parameters": {"type": "object", "properties": {
            "expression": {"type": "string", "description": "The expression, e.g. 12 * 7."}},
            "required": ["expression"]}}},
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The name of the city."}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "convert_units",
        "description": "Convert a value from one unit to another.",
        "parameters": {"type": "object", "properties": {
            "value": {"type": "number", "description": "The value to convert."},
            "from_unit": {"type": "string", "description": "The unit of the value: km, mi, kg, lb, m, ft, C or F."},
            "to_unit": {"type": "string", "description": "The unit to convert to."}},
            "required": ["value", "from_unit", "to_unit"]}}},
]


def tojson(x):
    # HF's chat-template tojson: json.dumps(x, ensure_ascii=False) with default separators.
    return json.dumps(x, ensure_ascii=False)


def tool_system_prompt(system=DEFAULT_SYSTEM, tools=TOOLS):
    s = system + ("\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                  "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
    for t in tools:
        s += "\n" + tojson(t)
    s += ("\n</tools>\n\nFor each function call, return a json object with function name and arguments "
          "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
          "\"arguments\": <args-json-object>}\n</tool_call>")
    return s


def render(messages, tools=None, add_generation_prompt=False, with_spans=False):
    """Render like CHAT_TEMPLATE. Returns text, or (text, spans) with the character spans of
    every assistant turn's generated part (after '<|im_start|>assistant\\n', through '<|im_end|>')."""
    out = []
    spans = []
    pos = 0

    def emit(s):
        nonlocal pos
        out.append(s)
        pos += len(s)

    if tools:
        sys_content = messages[0]["content"] if messages[0]["role"] == "system" else DEFAULT_SYSTEM
        emit("<|im_start|>system\n" + tool_system_prompt(sys_content, tools) + "<|im_end|>\n")
    else:
        if messages[0]["role"] == "system":
            emit("<|im_start|>system\n" + messages[0]["content"] + "<|im_end|>\n")
        else:
            emit("<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n")
    n = len(messages)
    for i, m in enumerate(messages):
        role = m["role"]
        if role == "system" and i == 0:
            continue
        if role == "user" or role == "system" or (role == "assistant" and not m.get("tool_calls")):
            if role == "assistant":
                emit("<|im_start|>assistant\n")
                start = pos
                emit(m["content"] + "<|im_end|>")
                spans.append([start, pos])
                emit("\n")
            else:
                emit("<|im_start|>" + role + "\n" + m["content"] + "<|im_end|>\n")
        elif role == "assistant":
            emit("<|im_start|>assistant")
            start = pos + 1  # the '\n' below belongs to the generation prompt
            body = ""
            if m.get("content"):
                body += "\n" + m["content"]
            for tc in m["tool_calls"]:
                f = tc.get("function", tc)
                body += '\n<tool_call>\n{"name": "' + f["name"] + '", "arguments": ' + tojson(f["arguments"]) + "}\n</tool_call>"
            emit(body + "<|im_end|>")
            spans.append([start, pos])
            emit("\n")
        elif role == "tool":
            if i == 0 or messages[i - 1]["role"] != "tool":
                emit("<|im_start|>user")
            emit("\n<tool_response>\n" + m["content"] + "\n</tool_response>")
            if i == n - 1 or messages[i + 1]["role"] != "tool":
                emit("<|im_end|>\n")
    if add_generation_prompt:
        emit("<|im_start|>assistant\n")
    text = "".join(out)
    return (text, spans) if with_spans else text


# ----------------------------------------------------------------------------------------
# Held-out split
# ----------------------------------------------------------------------------------------

def held_out(key, pct=12):
    """True when `key` belongs to the test split (about pct% of keys)."""
    return zlib.crc32(key.encode("utf-8")) % 100 < pct


class Split:
    def __init__(self, test):
        self.test = test

    def ok(self, key, pct=12):
        return held_out(key, pct) == self.test


# ----------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"),
    ("Brazil", "Brasília"), ("Argentina", "Buenos Aires"), ("Peru", "Lima"), ("Chile", "Santiago"),
    ("Russia", "Moscow"), ("Poland", "Warsaw"), ("Sweden", "Stockholm"), ("Norway", "Oslo"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Greece", "Athens"), ("Turkey", "Ankara"),
    ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("South Korea", "Seoul"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("Iran", "Tehran"),
    ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Czechia", "Prague"),
    ("Belgium", "Brussels"), ("the Netherlands", "Amsterdam"), ("Switzerland", "Bern"),
    ("Cuba", "Havana"), ("Nigeria", "Abuja"), ("Morocco", "Rabat"), ("Ethiopia", "Addis Ababa"),
    ("Colombia", "Bogotá"), ("the United Kingdom", "London"), ("Iceland", "Reykjavik"),
    ("Ukraine", "Kyiv"), ("Romania", "Bucharest"), ("the Philippines", "Manila"),
]

ELEMENTS = [
    ("hydrogen", "H"), ("helium", "He"), ("lithium", "Li"), ("carbon", "C"), ("nitrogen", "N"),
    ("oxygen", "O"), ("fluorine", "F"), ("neon", "Ne"), ("sodium", "Na"), ("magnesium", "Mg"),
    ("aluminium", "Al"), ("silicon", "Si"), ("phosphorus", "P"), ("sulfur", "S"), ("chlorine", "Cl"),
    ("argon", "Ar"), ("potassium", "K"), ("calcium", "Ca"), ("iron", "Fe"), ("copper", "Cu"),
    ("zinc", "Zn"), ("silver", "Ag"), ("tin", "Sn"), ("gold", "Au"), ("mercury", "Hg"),
    ("lead", "Pb"), ("uranium", "U"), ("nickel", "Ni"), ("iodine", "I"), ("platinum", "Pt"),
]

PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("light", "dark"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("hard", "soft"),
    ("high", "low"), ("old", "young"), ("rich", "poor"), ("strong", "weak"), ("wet", "dry"),
    ("long", "short"), ("loud", "quiet"), ("thick", "thin"), ("heavy", "light"), ("clean", "dirty"),
    ("day", "night"), ("in", "out"), ("left", "right"), ("first", "last"), ("win", "lose"),
    ("push", "pull"), ("buy", "sell"), ("begin", "end"), ("true", "false"), ("near", "far"),
    ("above", "below"), ("inside", "outside"), ("friend", "enemy"), ("question", "answer"),
    ("summer", "winter"), ("north", "south"), ("east", "west"), ("love", "hate"), ("sweet", "sour"),
    ("brave", "afraid"),
]

# (relation, phrasings, answer template); each item of the relation's table gives a dict of slots.
FACT_RELATIONS = {
    "capital": ([
        "What is the capital of {c}?", "What's the capital of {c}?", "Which city is the capital of {c}?",
        "Name the capital of {c}.", "Tell me the capital city of {c}.", "What city is the capital of {c}?",
    ], "The capital of {c} is {x}."),
    "capital_rev": ([
        "{x} is the capital of which country?", "Which country has {x} as its capital?",
        "Of which country is {x} the capital?", "{x} is the capital city of what country?",
    ], "{x} is the capital of {c}."),
    "symbol": ([
        "What is the chemical symbol for {e}?", "What is the symbol of {e}?",
        "Which chemical symbol stands for {e}?", "Give the chemical symbol of {e}.",
        "What's the element symbol for {e}?",
    ], "The chemical symbol for {e} is {s}."),
    "symbol_rev": ([
        "Which element has the symbol {s}?", "What element is {s}?",
        "The chemical symbol {s} stands for which element?", "Which element does the symbol {s} stand for?",
    ], "{s} is the symbol for {e}."),
    "planet_order": ([
        "What is the {o} planet from the Sun?", "Which planet is {o} from the Sun?",
        "Name the {o} planet from the Sun.", "Which planet is the {o} one from the Sun?",
    ], "The {o} planet from the Sun is {p}."),
    "planet_after": ([
        "Which planet comes after {p}?", "What planet is next after {p}?",
        "Which planet follows {p} going away from the Sun?", "What is the next planet after {p}?",
    ], "The planet after {p} is {q}."),
    "planet_before": ([
        "Which planet comes before {p}?", "What planet is just before {p}?",
        "Which planet is closer to the Sun than {p}, right before it?", "What is the planet before {p}?",
    ], "The planet before {p} is {q}."),
    "day_after": ([
        "What day comes after {d}?", "What is the day after {d}?", "Which day follows {d}?",
        "If today is {d}, what day is tomorrow?", "Which day of the week comes after {d}?",
    ], "The day after {d} is {q}."),
    "day_before": ([
        "What day comes before {d}?", "What is the day before {d}?", "Which day precedes {d}?",
        "If today is {d}, what day was yesterday?", "Which day of the week comes before {d}?",
    ], "The day before {d} is {q}."),
    "month_after": ([
        "What month comes after {m}?", "What is the month after {m}?", "Which month follows {m}?",
        "Which month comes right after {m}?",
    ], "The month after {m} is {q}."),
    "month_before": ([
        "What month comes before {m}?", "What is the month before {m}?", "Which month precedes {m}?",
        "Which month comes right before {m}?",
    ], "The month before {m} is {q}."),
    "opposite": ([
        "What is the opposite of {w}?", "What's the opposite of {w}?", "Give the opposite of {w}.",
        "Name a word that means the opposite of {w}.", "What word is the opposite of \"{w}\"?",
    ], "The opposite of {w} is {q}."),
}


def fact_items(rel):
    if rel == "capital" or rel == "capital_rev":
        return [dict(c=c, x=x) for c, x in CAPITALS]
    if rel == "symbol" or rel == "symbol_rev":
        return [dict(e=e, s=s) for e, s in ELEMENTS]
    if rel == "planet_order":
        return [dict(o=ORDINALS[i], p=PLANETS[i]) for i in range(8)]
    if rel == "planet_after":
        return [dict(p=PLANETS[i], q=PLANETS[i + 1]) for i in range(7)]
    if rel == "planet_before":
        return [dict(p=PLANETS[i], q=PLANETS[i - 1]) for i in range(1, 8)]
    if rel == "day_after":
        return [dict(d=DAYS[i], q=DAYS[(i + 1) % 7]) for i in range(7)]
    if rel == "day_before":
        return [dict(d=DAYS[i], q=DAYS[(i - 1) % 7]) for i in range(7)]
    if rel == "month_after":
        return [dict(m=MONTHS[i], q=MONTHS[(i + 1) % 12]) for i in range(12)]
    if rel == "month_before":
        return [dict(m=MONTHS[i], q=MONTHS[(i - 1) % 12]) for i in range(12)]
    if rel == "opposite":
        return [dict(w=a, q=b) for a, b in OPPOSITES] + [dict(w=b, q=a) for a, b in OPPOSITES
                                                          if b not in ("light",)]
    raise KeyError(rel)


def _build_fact_split():
    """(relation, item index, phrasing index) triples for train and test. Every fact keeps at
    least two training phrasings, so a test question asks a known fact in a phrasing that the
    training split never used for that fact."""
    train, test = [], []
    for rel, (phrasings, _) in FACT_RELATIONS.items():
        for i, item in enumerate(fact_items(rel)):
            key0 = rel + "|" + "|".join(item[k] for k in sorted(item))
            hold = [j for j in range(len(phrasings)) if held_out(key0 + "|" + str(j), 20)]
            if len(phrasings) - len(hold) < 2:
                hold = hold[: len(phrasings) - 2]
            for j in range(len(phrasings)):
                (test if j in hold else train).append((rel, i, j))
    return train, test


FACT_TRAIN, FACT_TEST = _build_fact_split()


def fact_qa(rel, i, j):
    phrasings, ans = FACT_RELATIONS[rel]
    item = fact_items(rel)[i]
    return phrasings[j].format(**item), ans.format(**item)


# Names built from syllables; a CRC of the name decides train/test.
SYL_A = ["Ka", "Lo", "Mi", "Ra", "Ven", "Tor", "Sel", "Bri", "Mar", "Dun", "Fel", "Gor", "Hal",
         "Is", "Jor", "Ke", "Lin", "Mo", "Nor", "Pel", "Quin", "Ros", "Sa", "Tam", "Ul", "Var",
         "Wen", "Yor", "Zel", "Ash", "Bel", "Cor", "Dar", "El", "Fen", "Gal", "Har", "Il"]
SYL_B = ["ba", "do", "ra", "li", "na", "ve", "to", "mi", "ro", "sa", "ke", "lu", "ne", "ti",
         "mo", "ra", "vi", "se", "da", "ri", "go", "la"]
SYL_END = ["n", "r", "s", "l", "m", "th", "x", "", "", "k", "d"]
TOWN_SUFFIX = ["ton", "ford", "by", "mere", "wick", "dale", "holm", "port", "field", "stead", "moor", "vale"]


def person_first(rng):
    return rng.choice(SYL_A) + rng.choice(SYL_B) + rng.choice(SYL_END)


def person_name(rng, split):
    while True:
        n = person_first(rng) + " " + rng.choice(SYL_A) + rng.choice(SYL_B) + rng.choice(SYL_END)
        if split.ok("person|" + n, 15):
            return n


def town_name(rng, split):
    while True:
        n = rng.choice(SYL_A) + rng.choice(SYL_B) + rng.choice(TOWN_SUFFIX)
        if split.ok("town|" + n, 15):
            return n


REAL_CITIES = ["Paris", "Berlin", "Rome", "Madrid", "Tokyo", "Cairo", "Lima", "Oslo", "Vienna",
               "Dublin", "London", "Seoul", "Bangkok", "Toronto", "Chicago", "Sydney", "Mumbai",
               "Lagos", "Istanbul", "Munich", "Lyon", "Porto", "Kyoto", "Denver", "Boston"]

RIVERS = ["Silver", "Amber", "Green", "Stone", "Willow", "Crow", "Mill", "Bright", "Swan", "Red"]
PRODUCTS = ["copper bells", "blue cheese", "wooden boats", "glass lamps", "wool blankets",
            "apple cider", "clay pots", "paper kites", "honey cakes", "iron keys", "silk scarves",
            "river fish", "green tea", "leather boots", "stone bridges", "tin whistles"]
JOBS = ["baker", "painter", "sailor", "teacher", "doctor", "farmer", "poet", "carpenter",
        "musician", "gardener", "pilot", "chemist"]
INSTRUMENTS = ["violin", "flute", "drums", "piano", "harp", "guitar", "trumpet", "cello"]
PETS = ["cat", "dog", "parrot", "rabbit", "goat", "turtle", "horse", "goldfish"]

CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "snowy", "foggy", "stormy", "clear"]

UNITS = {  # abbreviation: (singular, plural)
    "km": ("kilometer", "kilometers"), "mi": ("mile", "miles"), "kg": ("kilogram", "kilograms"),
    "lb": ("pound", "pounds"), "m": ("meter", "meters"), "ft": ("foot", "feet"),
    "C": ("degree Celsius", "degrees Celsius"), "F": ("degree Fahrenheit", "degrees Fahrenheit"),
}
CONVERSIONS = [("km", "mi"), ("mi", "km"), ("kg", "lb"), ("lb", "kg"), ("m", "ft"), ("ft", "m"),
               ("C", "F"), ("F", "C")]


def convert(v, a, b):
    f = {("km", "mi"): lambda x: x * 0.621371, ("mi", "km"): lambda x: x * 1.609344,
         ("kg", "lb"): lambda x: x * 2.204623, ("lb", "kg"): lambda x: x * 0.453592,
         ("m", "ft"): lambda x: x * 3.280840, ("ft", "m"): lambda x: x * 0.3048,
         ("C", "F"): lambda x: x * 9 / 5 + 32, ("F", "C"): lambda x: (x - 32) * 5 / 9}[(a, b)]
    return round(f(v), 1)


def fmt_num(x):
    if isinstance(x, float) and x == int(x):
        return str(int(x)) + ".0"
    return str(x)


# ----------------------------------------------------------------------------------------
# Skill generators. Each returns (messages, extra) for chats.
# ----------------------------------------------------------------------------------------

OPS = {"+": "plus", "-": "minus", "*": "times"}
ARITH_Q = ["What is {a} {op} {b}?", "What is {a} {w} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}.",
           "{a} {op} {b} = ?", "How much is {a} {w} {b}?", "What's {a} {op} {b}?", "Work out {a} {op} {b}."]


def rand_digits(rng, nd):
    return rng.randint(0 if nd == 1 else 10 ** (nd - 1), 10 ** nd - 1)


def arith_pair(rng, split, op, da, db, neg=None):
    """Operands with da and db digits. For '-', neg=False forces a >= b, neg=True a < b."""
    if op == "-" and neg is not None and ((da < db) != neg) and da != db:
        da, db = db, da
    for _ in range(1000):
        a, b = rand_digits(rng, da), rand_digits(rng, db)
        if op == "-" and neg is not None and ((a < b) != neg):
            continue
        if split.ok("arith|%d%s%d" % (a, op, b)):
            return a, b
    raise RuntimeError("no operands")


def arith_qa(rng, split, kind=None):
    if kind is None:
        r = rng.random()
        if r < 0.40:
            op = "+"
        elif r < 0.75:
            op = "-"
        else:
            op = "*"
        if op == "*":
            da, db = rng.choice([(1, 1), (1, 1), (1, 2), (2, 1), (2, 2), (2, 2), (1, 3), (3, 1)])
        else:
            da, db = rng.choice([(1, 1), (2, 2), (2, 2), (2, 2), (2, 2), (1, 2), (2, 1), (3, 3), (3, 3),
                                 (3, 2), (2, 3), (3, 1)])
        neg = None
        if op == "-":
            neg = rng.random() < 0.25
    else:
        op, da, db, neg = kind
    a, b = arith_pair(rng, split, op, da, db, neg)
    c = a + b if op == "+" else a - b if op == "-" else a * b
    q = rng.choice(ARITH_Q).format(a=a, b=b, op=op, w=OPS[op])
    return q, "%d %s %d = %d." % (a, op, b, c)


def fact_qa_sample(rng, split):
    rel, i, j = rng.choice(FACT_TEST if split.test else FACT_TRAIN)
    return fact_qa(rel, i, j)


GREETINGS = [
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi", "Hi! How can I help you today?"),
    ("Hi there!", "Hello! How can I help you today?"),
    ("Good morning!", "Good morning! How can I help you today?"),
    ("Who are you?", "I am a tiny assistant trained for the tiny-llm.cpp course."),
    ("What are you?", "I am a tiny language model trained for the tiny-llm.cpp course."),
    ("What can you do?", "I can do arithmetic, answer simple facts, use tools, read passages and tell short stories."),
    ("Thank you!", "You are welcome!"),
    ("Thanks a lot.", "You are welcome!"),
    ("How are you?", "I am fine, thank you. How can I help you?"),
    ("Goodbye!", "Goodbye! Have a nice day."),
    ("Bye.", "Goodbye! Have a nice day."),
]


# ---- prose grammar ----
ANIMALS = ["fox", "rabbit", "bear", "owl", "mouse", "cat", "dog", "duck", "frog", "turtle", "deer",
           "squirrel", "hedgehog", "wolf", "goat", "lamb", "robin", "badger", "otter", "pig"]
ADJS = ["little", "curious", "brave", "shy", "clever", "kind", "sleepy", "happy", "small", "young",
        "gentle", "funny", "quiet", "busy"]
PLACES = ["a cozy house by the river", "a hole under an old oak tree", "a small farm near the hills",
          "a quiet village in the forest", "a warm nest at the top of a tree", "a little cottage by the sea",
          "a garden full of flowers", "a barn at the edge of a field"]
ACTIVITIES = ["play in the tall grass", "look at the clouds", "collect shiny stones", "sing songs to the birds",
              "run along the river", "read old books", "pick berries in the woods", "watch the stars at night",
              "build castles out of sand", "swim in the pond"]
FINDS = ["a shiny key", "a tiny map", "a lost kitten", "a golden feather", "a broken kite", "a wooden box",
         "a big red ball", "a secret door", "a sleeping bird", "a strange blue egg"]
WHERE = ["under a bush", "near the river", "behind the barn", "in the tall grass", "at the top of the hill",
         "on the path", "in the old well", "next to a big rock"]
REACTIONS = ["was very surprised", "felt a little scared", "smiled from ear to ear", "jumped with joy",
             "did not know what to do", "wanted to tell everyone"]
DECISIONS = ["asked a wise old owl for help", "took it home to show a friend", "decided to find its owner",
             "followed the path to see where it led", "shared it with the other animals",
             "kept it safe and waited until morning"]
ENDINGS = ["everyone was happy and they had a big party", "they became the best of friends",
           "the day ended with a warm cup of milk", "they learned that sharing makes everyone glad",
           "the sun set and the forest was quiet again", "they all went home tired but happy"]
SEASONS = [("spring", "the flowers open and the birds come back"), ("summer", "the days are long and warm"),
           ("autumn", "the leaves turn red and gold and fall from the trees"),
           ("winter", "snow covers the ground and the nights are long")]


def story(rng, animal=None, name=None):
    animal = animal or rng.choice(ANIMALS)
    name = name or person_first(rng)
    he = rng.choice(["He", "She"])
    parts = [
        "Once upon a time, there was a %s %s named %s." % (rng.choice(ADJS), animal, name),
        "%s lived in %s." % (name, rng.choice(PLACES)),
        "Every day, %s liked to %s." % (name, rng.choice(ACTIVITIES)),
        "One day, %s found %s %s." % (name, rng.choice(FINDS), rng.choice(WHERE)),
        "%s %s." % (he, rng.choice(REACTIONS)),
        "%s %s." % (name, rng.choice(DECISIONS)),
    ]
    if rng.random() < 0.5:
        parts.append("%s %s." % (he, rng.choice(REACTIONS)))
    parts.append("In the end, %s." % rng.choice(ENDINGS))
    return " ".join(parts)


def season_text(rng):
    s, d = rng.choice(SEASONS)
    a = rng.choice(ANIMALS)
    return ("In %s, %s. The %s likes to %s. " % (s, d, a, rng.choice(ACTIVITIES)) +
            "Many people think that %s is the best time of the year." % s)


def prose(rng):
    r = rng.random()
    if r < 0.75:
        return story(rng)
    if r < 0.9:
        return season_text(rng)
    return story(rng) + "\n\n" + story(rng)


# ---- tools ----

def weather_city(rng, split):
    if not split.test and rng.random() < 0.3:
        return rng.choice(REAL_CITIES)
    while True:
        c = rng.choice(SYL_A) + rng.choice(SYL_B) + rng.choice(SYL_END + TOWN_SUFFIX)
        if split.ok("city|" + c, 15):
            return c


WEATHER_Q = ["What's the weather in {c}?", "What is the weather like in {c} today?",
             "How is the weather in {c}?", "Is it cold in {c} right now?", "Tell me the weather for {c}.",
             "Can you check the weather in {c}?"]
CALC_Q = ["Use the calculator to compute {e}.", "What is {e}?", "Please calculate {e}.",
          "Can you work out {e} for me?", "Calculate {e}.", "How much is {e}?"]
CONV_Q = ["Convert {v} {fl} to {tl}.", "How many {tl} is {v} {fl}?", "What is {v} {fa} in {tl}?",
          "Please convert {v} {fl} into {tl}."]


def tool_call_msg(name, args):
    return {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": name, "arguments": args}}]}


def tool_conv(rng, split, kind=None):
    """Returns (messages, info) where messages is the whole conversation (system is implied)."""
    kind = kind or rng.choice(["weather", "weather", "calc", "calc", "convert", "convert", "none"])
    if kind == "weather":
        c = weather_city(rng, split)
        t = rng.randint(-10, 35)
        cond = rng.choice(CONDITIONS)
        q = rng.choice(WEATHER_Q).format(c=c)
        args = {"city": c}
        resp = tojson({"city": c, "temperature_c": t, "condition": cond})
        final = "It is %d°C and %s in %s." % (t, cond, c)
        name = "get_weather"
    elif kind == "calc":
        op = rng.choice(["+", "-", "*"])
        while True:
            a = rand_digits(rng, rng.choice([1, 2, 3, 3, 4]))
            b = rand_digits(rng, rng.choice([1, 2, 3, 3, 4]))
            if split.ok("calc|%d%s%d" % (a, op, b)):
                break
        e = "%d %s %d" % (a, op, b)
        r = a + b if op == "+" else a - b if op == "-" else a * b
        q = rng.choice(CALC_Q).format(e=e)
        args = {"expression": e}
        resp = str(r)
        final = "%s = %d." % (e, r)
        name = "calculator"
    elif kind == "convert":
        fa, ta = rng.choice(CONVERSIONS)
        while True:
            v = rng.randint(1, 500)
            if split.ok("conv|%d%s%s" % (v, fa, ta)):
                break
        res = convert(v, fa, ta)
        fl = UNITS[fa][0 if v == 1 else 1]
        tl = UNITS[ta][1]
        q = rng.choice(CONV_Q).format(v=v, fl=fl, tl=tl, fa=fa)
        args = {"value": v, "from_unit": fa, "to_unit": ta}
        resp = tojson({"value": res, "unit": ta})
        final = "%d %s is %s %s." % (v, fa, fmt_num(res), ta)
        name = "convert_units"
    else:
        r = rng.random()
        if r < 0.5:
            q, a = fact_qa_sample(rng, split)
        else:
            q, a = rng.choice(GREETINGS)
        return [{"role": "user", "content": q}, {"role": "assistant", "content": a}], \
            {"kind": "none", "answer": a}
    msgs = [{"role": "user", "content": q}, tool_call_msg(name, args),
            {"role": "tool", "content": resp}, {"role": "assistant", "content": final}]
    return msgs, {"kind": kind, "name": name, "arguments": args, "answer": final}


# ---- reading comprehension ----

def town_passage(rng, split, used):
    while True:
        t = town_name(rng, split)
        if t not in used:
            break
    used.add(t)
    f = dict(town=t, founder=person_name(rng, split), year=rng.randint(1200, 1950),
             river=rng.choice(RIVERS), product=rng.choice(PRODUCTS), mayor=person_name(rng, split))
    text = ("{town} is a small town by the {river} River. It was founded in {year} by {founder}. "
            "The town is known for its {product}. The mayor of {town} is {mayor}.").format(**f)
    qs = [("Who founded {town}?", "{town} was founded by {founder}."),
          ("When was {town} founded?", "{town} was founded in {year}."),
          ("What is {town} known for?", "{town} is known for its {product}."),
          ("Who is the mayor of {town}?", "The mayor of {town} is {mayor}."),
          ("Which river is {town} by?", "{town} is by the {river} River.")]
    return text, [(q.format(**f), a.format(**f)) for q, a in qs]


def person_passage(rng, split, used):
    while True:
        p = person_name(rng, split)
        if p not in used:
            break
    used.add(p)
    first = p.split()[0]
    f = dict(p=p, first=first, job=rng.choice(JOBS), town=town_name(rng, split),
             year=rng.randint(1900, 2005), inst=rng.choice(INSTRUMENTS), pet=rng.choice(PETS))
    text = ("{p} is a {job} who lives in {town}. {first} was born in {year} and plays the {inst}. "
            "{first} has a {pet}.").format(**f)
    qs = [("What is {p}'s job?", "{p} is a {job}."),
          ("Where does {p} live?", "{p} lives in {town}."),
          ("When was {p} born?", "{p} was born in {year}."),
          ("Which instrument does {p} play?", "{p} plays the {inst}."),
          ("What pet does {p} have?", "{p} has a {pet}.")]
    return text, [(q.format(**f), a.format(**f)) for q, a in qs]


READ_INTRO = ["Answer the question using the passages below.", "Read the passages and answer the question.",
              "Use the following passages to answer the question."]


def reading(rng, split, with_qas=False):
    n = rng.randint(2, 4)
    used = set()
    passages, qas = [], []
    for _ in range(n):
        text, qa = (town_passage if rng.random() < 0.5 else person_passage)(rng, split, used)
        passages.append(text)
        qas.append(qa)
    k = rng.randrange(n)
    q, a = rng.choice(qas[k])
    prompt = rng.choice(READ_INTRO) + "\n\n" + "\n\n".join(
        "Passage %d: %s" % (i + 1, p) for i, p in enumerate(passages)) + "\n\nQuestion: " + q
    if with_qas:
        return prompt, a, passages, k, qas
    return prompt, a, passages, k


# ---- passkey ----

FILLER = ["The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
          "There and back again.", "The river flows to the sea.", "Birds sing in the morning.",
          "The road is long and quiet."]


def passkey_key(rng, split):
    while True:
        nd = rng.choice([4, 5, 5, 5, 6])
        k = rand_digits(rng, nd)
        if split.ok("passkey|%d" % k, 15):
            return k


def passkey_prompt(rng, key, n_sentences, where=None):
    """n_sentences filler sentences with the key inserted at sentence index `where`."""
    sents = [rng.choice(FILLER) for _ in range(n_sentences)]
    where = rng.randint(0, n_sentences) if where is None else where
    sents.insert(where, "The pass key is %d. Remember it. %d is the pass key." % (key, key))
    return ("There is a pass key hidden inside a lot of irrelevant text. Find it and remember it.\n\n"
            + " ".join(sents) + "\n\nWhat is the pass key?")


def passkey(rng, split, max_sentences=70):
    key = passkey_key(rng, split)
    n = rng.randint(2, max_sentences)
    return passkey_prompt(rng, key, n), "The pass key is %d." % key


# ----------------------------------------------------------------------------------------
# Training documents
# ----------------------------------------------------------------------------------------

# Document mixes of the training split (fractions of documents). "v1" trained the shipped
# models and the tokenizer (tools/models/tokenizer). "v2" gives reading comprehension the
# largest share and less to the long, mostly-prompt tool documents; meant for a longer retrain
# with --reading-q 3 (several questions per reading document); the shipped models were trained on it (data/models/README.md).
MIX_V1 = [("arith", 0.30), ("facts", 0.13), ("multi", 0.06), ("prose", 0.10), ("story_chat", 0.03),
          ("tool", 0.17), ("reading", 0.11), ("passkey", 0.08), ("greet", 0.02)]
MIX_V2 = [("arith", 0.30), ("facts", 0.12), ("multi", 0.06), ("prose", 0.09), ("story_chat", 0.03),
          ("tool", 0.13), ("reading", 0.18), ("passkey", 0.07), ("greet", 0.02)]
MIXES = {"v1": MIX_V1, "v2": MIX_V2}
MIX = MIX_V1
TOKENIZER_MIX = MIX_V1


def one_qa(rng, split, r):
    if r < 0.55:
        return arith_qa(rng, split)
    if r < 0.9:
        return fact_qa_sample(rng, split)
    return rng.choice(GREETINGS)


def train_doc(rng, split, mix=MIX, reading_q=1):
    """One training document: {"skill", "text", "spans"}. Reading documents ask 1..reading_q
    questions about the same passages (follow-up turns carry only "Question: ...")."""
    x = rng.random()
    acc = 0.0
    skill = mix[-1][0]
    for name, w in mix:
        acc += w
        if x < acc:
            skill = name
            break
    tools = None
    if skill == "prose":
        text = prose(rng) + "<|endoftext|>"
        return {"skill": skill, "text": text, "spans": [[0, len(text)]]}
    if skill == "arith":
        q, a = arith_qa(rng, split)
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if rng.random() < 0.5:  # a few more arithmetic turns: cheap extra supervision
            for _ in range(rng.randint(1, 3)):
                q, a = arith_qa(rng, split)
                msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    elif skill == "facts":
        msgs = []
        for _ in range(rng.randint(1, 3)):
            q, a = fact_qa_sample(rng, split)
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    elif skill == "multi":
        msgs = []
        for _ in range(rng.randint(2, 4)):
            q, a = one_qa(rng, split, rng.random())
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    elif skill == "greet":
        q, a = rng.choice(GREETINGS)
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    elif skill == "story_chat":
        animal = rng.choice(ANIMALS)
        q = rng.choice(["Tell me a short story about a {a}.", "Write a story about a {a}.",
                        "Can you tell me a story about a {a}?"]).format(a=animal)
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": story(rng, animal=animal)}]
    elif skill == "tool":
        msgs, _ = tool_conv(rng, split)
        tools = TOOLS
    elif skill == "reading":
        prompt, a, _, _, qas = reading(rng, split, with_qas=True)
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": a}]
        if reading_q > 1:
            for _ in range(rng.randint(1, reading_q) - 1):
                q, a = rng.choice(rng.choice(qas))
                msgs += [{"role": "user", "content": "Question: " + q}, {"role": "assistant", "content": a}]
    elif skill == "passkey":
        prompt, a = passkey(rng, split)
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": a}]
    else:
        raise KeyError(skill)
    if tools is None:
        msgs = [{"role": "system", "content": DEFAULT_SYSTEM}] + msgs
    text, spans = render(msgs, tools=tools, with_spans=True)
    return {"skill": skill, "text": text, "spans": spans}


def train_docs(seed, n, shard=0, mix=MIX, reading_q=1):
    """n training documents of shard `shard` (each shard has its own RNG stream)."""
    rng = random.Random("%d/%d" % (seed, shard))
    split = Split(False)
    return [train_doc(rng, split, mix, reading_q) for _ in range(n)]


# ----------------------------------------------------------------------------------------
# Held-out test set
# ----------------------------------------------------------------------------------------

def _chat(skill, prompt, answer, **kw):
    d = {"skill": skill, "messages": [{"role": "system", "content": DEFAULT_SYSTEM},
                                      {"role": "user", "content": prompt}],
         "tools": False, "answer": answer, "check": "exact"}
    d.update(kw)
    return d


def make_test_set(seed=1234, per_skill=200):
    rng = random.Random("test/%d" % seed)
    split = Split(True)
    out = []
    kinds = [("arith_add_1d", ("+", 1, 1, None)), ("arith_add_2d", ("+", 2, 2, None)),
             ("arith_add_3d", ("+", 3, 3, None)),
             ("arith_sub_1d", ("-", 1, 1, False)), ("arith_sub_2d", ("-", 2, 2, False)),
             ("arith_sub_2d_neg", ("-", 2, 2, True)), ("arith_sub_3d", ("-", 3, 3, False)),
             ("arith_mul_1x1", ("*", 1, 1, None)), ("arith_mul_2x1", ("*", 2, 1, None)),
             ("arith_mul_2x2", ("*", 2, 2, None))]
    for skill, kind in kinds:
        seen = set()
        n = per_skill if kind[1] > 1 or kind[2] > 1 else 10
        tries = 0
        while len(seen) < n and tries < 100000:
            tries += 1
            q, a = arith_qa(rng, split, kind)
            if a in seen:
                continue
            seen.add(a)
            out.append(_chat(skill, q, a))
    for rel, i, j in FACT_TEST:
        q, a = fact_qa(rel, i, j)
        out.append(_chat("facts", q, a, relation=rel))
    for kind in ["weather", "calc", "convert", "none"]:
        n = per_skill // 2 if kind != "none" else per_skill // 4
        for _ in range(n):
            msgs, info = tool_conv(rng, split, kind)
            if kind == "none":
                out.append({"skill": "tool_none", "messages": msgs[:1], "tools": True,
                            "answer": info["answer"], "check": "no_tool"})
                continue
            out.append({"skill": "tool_call", "messages": msgs[:1], "tools": True, "answer": msgs[1],
                        "check": "tool_call", "tool": kind,
                        "expected_call": {"name": info["name"], "arguments": info["arguments"]}})
            out.append({"skill": "tool_answer", "messages": msgs[:3], "tools": True,
                        "answer": info["answer"], "check": "exact", "tool": kind})
    for _ in range(per_skill):
        prompt, a, passages, k = reading(rng, split)
        out.append(_chat("reading", prompt, a, passages=passages, gold_passage=k))
    for _ in range(per_skill):
        key = passkey_key(rng, split)
        n = rng.randint(2, 70)
        p = passkey_prompt(rng, key, n)
        out.append(_chat("passkey", p, "The pass key is %d." % key, filler_sentences=n))
    for _ in range(per_skill // 4):
        animal = rng.choice(ANIMALS)
        out.append(_chat("story", "Tell me a short story about a %s." % animal, None, check="story",
                         animal=animal))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=["train", "test"], default="train")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=1000, help="train documents (train split)")
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--per-skill", type=int, default=200, help="test examples per skill")
    ap.add_argument("--out", default="-")
    ap.add_argument("--show", action="store_true", help="print rendered samples instead of JSONL")
    a = ap.parse_args()
    recs = train_docs(a.seed, a.n, a.shard) if a.split == "train" else make_test_set(a.seed, a.per_skill)
    f = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8")
    for r in recs:
        if a.show:
            if "text" in r:
                f.write("=== %s\n%s\n" % (r["skill"], r["text"]))
                for s, e in r["spans"]:
                    f.write("  [train] %r\n" % r["text"][s:e])
            else:
                f.write("=== %s\n%s\n  -> %r\n" % (r["skill"], render(r["messages"], TOOLS if r["tools"] else None,
                                                                     add_generation_prompt=True), r["answer"]))
        else:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if f is not sys.stdout:
        f.close()


if __name__ == "__main__":
    main()
