"""Closed word classes of English prompts, read whole rather than collected from examples: the words around an
object and its colour that do not change what is asked for (articles, determiners, quantifiers, pronouns,
be/have/do and the modal verbs, relative words, degree adverbs, the request around a prompt in every verb
form, contractions with or without their apostrophe, chat spellings), and the words that do (negations,
"or"), which no rule may read.
"""

from __future__ import annotations

import re

__all__ = ["FILLERS", "NEVER_READ", "NEGATING_PREFIXES", "REQUEST_VERBS", "contraction", "negation"]

# the verbs of a request ("i want", "please make me", "can you generate"), in every form ("making", "drew")
_REQUEST = ("want", "need", "like", "love", "make", "give", "get", "generate", "create", "draw", "render", "build",
            "design", "produce", "show", "see", "sculpt")  # not "model": a generic noun
_IRREGULAR = ("made", "gave", "given", "got", "gotten", "drew", "drawn", "built", "shown", "saw", "seen")


def _inflections(verb: str) -> tuple[str, ...]:
    """`verb` with -s, -ed and -ing: a final e dropped before -ing ("making"), a final consonant after one
    vowel also doubled ("getting", "modelling")."""
    if verb.endswith("ee"):
        return verb, verb + "s", verb + "ing"
    if verb.endswith("e"):
        return verb, verb + "s", verb + "d", verb[:-1] + "ing"
    forms = (verb, verb + "s", verb + "ed", verb + "ing")
    if re.search(r"[^aeiou][aeiou][bdglmnpt]$", verb):
        forms += (verb + verb[-1] + "ed", verb + verb[-1] + "ing")
    return forms


REQUEST_VERBS = tuple(dict.fromkeys(w for v in _REQUEST for w in _inflections(v))) + _IRREGULAR
# closed classes, complete rather than collected from examples: articles and determiners, quantifiers,
# pronouns, the verbs "be", "have" and "do" and the modal verbs, relative and question words, the
# prepositions and conjunctions that join an object to its colour or parts, degree adverbs, interjections,
# and the request around a prompt ("i want", "please make me", "can you
# generate", "i'd like"). Words that could change the object (not, no, without, or, on, next to) are not here.
FILLERS = ("a", "an", "the", "one", "single", "this", "that", "these", "those", "some", "any", "my", "your",
           "our", "its", "it", "i", "me", "you", "we", "us", "is", "are", "was", "be", "being", "been", "am",
           "has", "have", "having", "had", "do", "does", "will", "would", "shall", "should", "can", "could", "may",
           "might", "which", "who", "whose", "where", "of", "in", "with", "and", "as", "for", "to", "just",
           "coloured", "colored", "colour", "color", "tinted", "toned", "hued", "shaped", "made", "painted", "3d",
           "please", "thanks", "thank", "so", *REQUEST_VERBS,
           "were", "did", "all", "both", "each", "every",
           # degree adverbs ("a very red ball", "a really small cone")
           "very", "really", "super", "quite", "extremely", "totally", "completely", "entirely", "fully", "rather",
           "fairly", "somewhat", "slightly", "too",
           # the rest of the personal, possessive, reflexive and indefinite pronouns and determiners
           "he", "she", "they", "him", "her", "them", "his", "their", "mine", "yours", "ours", "theirs", "myself",
           "yourself", "ourselves", "something", "anything", "someone", "somebody", "another", "such", "what",
           "how", "about", "if", "then", "also", "now",
           # interjections and greetings ("hey, can i get ...", "ok so ...")
           "hey", "hi", "hello", "hiya", "yo", "ok", "okay", "oh", "um", "uh", "umm", "hmm", "alright", "yes",
           "yeah", "yep", "sure", "wow", "cheers", "kindly",
           # chat spellings of the same words
           "pls", "plz", "u", "ur", "thx", "ty", "gimme", "wanna", "gonna", "gotta", "lemme", "kinda", "sorta",
           "k")
# words that change what is asked for: never read by a rule, so a prompt holding one is refused
NEVER_READ = {"not", "no", "non", "never", "nor", "or", "but", "without", "except", "than", "instead", "neither"}
_NEGATED = {"do", "does", "did", "is", "are", "was", "were", "ca", "can", "could", "would", "should", "wo", "have",
            "has", "had", "must", "need", "ai", "might", "shall", "sha"}  # + n't: "don't", "isnt", "won't"


NEGATING_PREFIXES = {"un", "anti"}  # hyphenated before a colour they undo it ("un-red")


def negation(word: str) -> bool:
    """Whether `word` says no: a NEVER_READ word or a contraction with n't (with or without the apostrophe)."""
    w = word.replace("'", "")
    return word in NEVER_READ or (w.endswith("nt") and w[:-2] in _NEGATED)


# contractions written without the apostrophe that are words in their own right ("ill", "well", "wed")
_NOT_CONTRACTIONS = {"ill", "well", "wed", "shell", "hell", "were"}
# an apostrophe after one of these is a contraction of a filler ("i'd", "that's", "it's", "let's", "you're")
CONTRACTED = {"i", "you", "we", "it", "that", "there", "what", "let", "here", "who"}
def contraction(word: str) -> tuple[str, str] | None:
    """("filler", word) for a contraction of a filler ("i'd", "that's", "let's"; "thats", "im" without the
    apostrophe), else None."""
    head, _, tail = word.partition("'")
    if tail in ("s", "d", "m", "ll", "re", "ve") and head in CONTRACTED:
        return ("filler", word)
    if "'" not in word and word not in _NOT_CONTRACTIONS:  # chat spelling without the apostrophe: "thats", "im"
        for end in ("s", "d", "m", "ll", "re", "ve"):
            if word.endswith(end) and word[: -len(end)] in CONTRACTED:
                return ("filler", word)
    return None


