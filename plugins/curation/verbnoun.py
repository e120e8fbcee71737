"""Verb-noun structure of instructions: the Self-Instruct paper's diversity figure.

The paper parses each instruction with a constituency parser and keeps the root verb and
its first direct noun object. No parser model is available offline (spaCy and NLTK ship
their models separately), so this is a heuristic for imperative instructions:

* the verb is the first word (after "please", "now", ...) when it is a known instruction
  verb, or any other word that is not a question word, auxiliary, pronoun, determiner,
  preposition, and does not look inflected (-ing, -ed, -ly, a plural -s);
* the noun is the first later word that is not a particle ("come *up with*"), pronoun,
  determiner, number, adverb (-ly), hyphenated modifier or adjective (a list, and suffixes
  such as -ical, -ous, -ful, -able, -est), searched until a preposition, conjunction or
  punctuation ends the verb phrase; when further nouns follow it ("a grocery *list*", "a
  python *function*") the last of up to three is the head; plurals are made singular by a
  suffix rule.

"What is the capital of France?" gives no pair (the paper's parser finds no imperative
verb there either); "Write a short story about a dragon." gives (write, story). Questions
and statements are counted as "no verb-noun pair" and shown as that share.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+|[^\sA-Za-z\d]")

LEAD = {"please", "now", "then", "also", "kindly", "next", "first", "finally", "just", "simply"}

VERBS = set("""
write generate create give make describe explain list find identify classify summarize summarise rewrite
translate suggest provide name tell compose design develop compare convert calculate compute edit correct
paraphrase analyze analyse evaluate determine choose select sort rank predict estimate recommend outline
construct add remove replace change detect extract fill complete answer solve formulate propose brainstorm
come think imagine pretend act play help plan organize organise categorize categorise label rate review
improve simplify shorten expand elaborate define illustrate arrange combine match count check verify decide
guess infer reply respond draft produce build implement output return print format reformat transform turn
reverse split group cluster order prioritize highlight insert delete fix debug discuss express address focus
assess measure share show teach learn read look search use take put get keep let draw sketch
invent devise craft prepare cook recommend offer state mention note point interpret clarify justify argue
prove derive reorder rephrase restate retell narrate recount annotate tag grade score judge critique
""".split())

NOT_VERBS = set("""
what which who whom whose when where why how whether is are was were be been being am do does did done can
could would should will shall may might must have has had i you we they he she it there here this that these
those the a an my your our their his her its some any each every all no not none one in on at for from with
if given based as by after before according using to of and or but so than while because although though
since unless until yes ok okay hi hello dear
""".split())

PARTICLES = {"up", "out", "down", "with", "off", "over", "back", "away", "me", "us", "him", "her", "them",
             "it", "you", "yourself", "myself", "ourselves", "themselves", "again"}

DETERMINERS = set("""
a an the this that these those some any each every all my your our their its his her one two three four five
six seven eight nine ten few several many more most another other such both either neither same first second
third last next own
""".split())

ADJECTIVES = set("""
following given new short brief simple detailed creative good best better great interesting funny humorous
clear concise complete possible different similar appropriate suitable relevant specific general common
popular unique original random correct proper main key important main simple basic complex formal informal
positive negative professional personal catchy persuasive informative descriptive short long little big
small large high low full whole entire real fictional famous typical healthy quick easy hard difficult
numbered bulleted incorrect past present future various potential major minor average ideal perfect useful
strange unusual famous modern ancient
""".split())

ADJECTIVE_ENDINGS = ("ical", "ous", "ful", "less", "able", "ible", "ular")

STOP = set("""
of for about to in on at into onto from by with without that which who whether if how what why when where
and or but so as than between among through during per via like based according regarding
""".split())


def _words(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _is_verb(word: str) -> bool:
    if word in VERBS:
        return True
    if word in NOT_VERBS or not word.isalpha() or len(word) < 2:
        return False
    if word.endswith(("ing", "ed", "ly")):
        return False
    if word.endswith("s") and not word.endswith("ss"):
        return False
    return True


def _modifier(word: str) -> bool:
    """Words skipped on the way to the object: particles, determiners, numbers, adjectives, adverbs."""
    if word in PARTICLES or word in DETERMINERS or word in ADJECTIVES or word.isdigit() or not word.isalpha():
        return True
    if word.endswith("ly") or (len(word) > 5 and word.endswith(ADJECTIVE_ENDINGS)):
        return True
    return len(word) > 5 and word.endswith("est") and not word.endswith(("quest", "test", "terest", "rest"))


def _content(word: str) -> bool:
    """A word that can continue a noun compound ("grocery list", "python function")."""
    return (word.isalpha() and word not in STOP and word not in DETERMINERS and word not in PARTICLES
            and word not in NOT_VERBS and not word.endswith(("ing", "ed", "ly")))


def verb_noun(instruction: str) -> tuple[str, str] | None:
    """The (verb, noun) of an instruction's first sentence, or None when it has no
    imperative verb with a noun object (see the module docstring for the rules)."""
    toks = [t.lower() for t in _words(instruction.strip())[:40]]
    i = 0
    while i < len(toks) and (toks[i] in LEAD or not toks[i][0].isalpha()):  # "1.", "Please", "- "
        i += 1
    if i >= len(toks) or not _is_verb(toks[i]):
        return None
    verb = toks[i]
    j = i + 1
    while j < min(len(toks), i + 10):
        word = toks[j]
        if not word[0].isalnum():
            if word in ("-", "'", "\""):
                j += 1
                continue
            return None
        if word in STOP and word not in PARTICLES:
            return None
        if _modifier(word) or word.endswith("'s"):
            j += 1
            continue
        # the object; in a compound ("a grocery list") the last of up to three nouns is the head
        end = j
        while end + 1 < min(len(toks), j + 3) and _content(toks[end + 1]):
            end += 1
        return verb, _singular(toks[end])
    return None


def analyse(instructions: Sequence[str], top_verbs: int = 20) -> dict[str, Any]:
    """Verb-noun statistics of a set of instructions.

    ``parsed_share``: share with a (verb, noun) pair; ``distinct_verbs``, ``distinct_pairs``;
    ``verb_entropy_bits`` (entropy of the verb distribution: higher is more varied);
    ``top_verbs_share``: share of the parsed pairs whose verb is among the ``top_verbs`` most
    common (lower is more varied); ``pairs``: the pair counts, most common first.
    """
    pairs = [p for p in (verb_noun(t) for t in instructions) if p is not None]
    verbs = Counter(v for v, _ in pairs)
    counted = Counter(pairs)
    total = len(pairs)
    entropy = -sum((c / total) * math.log2(c / total) for c in verbs.values()) if total else 0.0
    top = sum(c for _, c in verbs.most_common(top_verbs))
    return {
        "instructions": len(instructions),
        "parsed": total,
        "parsed_share": total / len(instructions) if instructions else 0.0,
        "distinct_verbs": len(verbs),
        "distinct_pairs": len(counted),
        "verb_entropy_bits": entropy,
        "top_verbs_share": top / total if total else 0.0,
        "pairs": [[v, n, c] for (v, n), c in counted.most_common()],
    }


def sunburst(pairs: Sequence[Sequence[Any]], path: Path, title: str, top_verbs: int = 20,
             top_nouns: int = 4) -> Path | None:
    """The paper's figure: the ``top_verbs`` most common verbs (inner ring, sized by count) and
    each verb's ``top_nouns`` most common nouns (outer ring: the verb's arc split among them by
    their counts); None without pairs."""
    if not pairs:
        return None
    from alignkit.plugins.curation.plots import plt, save

    verbs: Counter = Counter()
    nouns: dict[str, Counter] = {}
    for verb, noun, count in pairs:
        verbs[verb] += count
        nouns.setdefault(verb, Counter())[noun] += count
    chosen = [v for v, _ in verbs.most_common(top_verbs)]
    total = sum(verbs[v] for v in chosen)
    cmap = plt().get_cmap("tab20")
    inner_sizes, inner_labels, inner_colors = [], [], []
    outer_sizes, outer_labels, outer_colors = [], [], []
    for k, verb in enumerate(chosen):
        colour = cmap(k % 20)
        inner_sizes.append(verbs[verb])
        inner_labels.append(verb)
        inner_colors.append(colour)
        top = nouns[verb].most_common(top_nouns)
        shown = sum(count for _, count in top)
        for noun, count in top:  # the verb's arc, split among its top nouns by their counts
            size = verbs[verb] * count / shown
            outer_sizes.append(size)
            outer_labels.append(noun if size / total * 360 >= 4 else "")
            outer_colors.append((*colour[:3], 0.55))
    fig, ax = plt().subplots(figsize=(10, 10))
    ax.pie(inner_sizes, radius=0.62, labels=inner_labels, labeldistance=0.62, colors=inner_colors,
           startangle=90, counterclock=False, wedgeprops={"width": 0.42, "edgecolor": "white"},
           textprops={"fontsize": 8, "ha": "center", "va": "center"}, rotatelabels=True)
    ax.pie(outer_sizes, radius=1.0, labels=outer_labels, labeldistance=0.8, colors=outer_colors,
           startangle=90, counterclock=False, wedgeprops={"width": 0.38, "edgecolor": "white"},
           textprops={"fontsize": 7, "ha": "center", "va": "center"}, rotatelabels=True)
    ax.set(aspect="equal")
    ax.set_title(title, fontsize=10)
    return save(fig, path)
