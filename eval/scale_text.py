"""Everyday conversation text from a seeded template grammar (our own words, no dataset).

A `Talk` writes the turns of a conversation between a user and a voice agent about one
everyday topic (food, travel, work, family, pets, health, home, hobbies, money, shows, cars,
school): the user speaks in the first person about what they did, plan and worry about, and
the agent acknowledges, asks back and offers reminders. Every choice is drawn from the
``random.Random`` it is given, so the same seed writes the same text. The queries are the
questions a memory search is asked ("what did I say about the dentist?").
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    nouns: tuple[str, ...]
    #: (gerund, simple past) pairs: "baking bread" / "baked bread"
    activities: tuple[tuple[str, str], ...]
    places: tuple[str, ...]


def _t(name: str, nouns: str, activities: str, places: str) -> Topic:
    acts = tuple(tuple(a.split("/")) for a in activities.split(";"))
    return Topic(
        name,
        tuple(nouns.split(",")),
        acts,  # type: ignore[arg-type]  # pairs by construction
        tuple(places.split(",")),
    )


TOPICS: tuple[Topic, ...] = (
    _t(
        "food",
        "pasta,curry,soup,sourdough,pizza,tacos,sushi,pancakes,lasagna,dumplings,risotto,chili,"
        "banana bread,salad,barbecue,birthday cake,ramen,omelette",
        "baking bread/baked bread;meal prepping/meal prepped;trying a new recipe/tried a new"
        " recipe;grilling on the patio/grilled on the patio;cooking for friends/cooked for"
        " friends;eating out/ate out",
        "the farmers market,the new Thai place,grandma's house,the bakery downtown,the food"
        " truck by the office,the Italian restaurant on Main Street",
    ),
    _t(
        "travel",
        "flight,hotel,passport,suitcase,road trip,train ticket,itinerary,beach house,campsite,"
        "rental car,layover,travel insurance,visa,cabin",
        "packing for the trip/packed for the trip;booking flights/booked flights;driving up the"
        " coast/drove up the coast;visiting the old town/visited the old town;camping by the"
        " lake/camped by the lake",
        "Lisbon,the coast,the mountains,Chicago,Tokyo,the lake,Denver,the national park,"
        "Barcelona,my aunt's place in Ohio",
    ),
    _t(
        "work",
        "meeting,deadline,project,manager,presentation,interview,promotion,spreadsheet,client,"
        "quarterly review,performance review,team offsite,new hire,budget report",
        "working late/worked late;preparing the slides/prepared the slides;talking to my"
        " manager/talked to my manager;applying for the job/applied for the job;training the"
        " new hire/trained the new hire",
        "the office,the client's site,the conference in Austin,the coworking space,a video call",
    ),
    _t(
        "family",
        "birthday party,wedding,reunion,graduation,anniversary,baby shower,holiday dinner,"
        "family photo,school play,recital",
        "visiting my parents/visited my parents;calling my sister/called my sister;planning the"
        " party/planned the party;babysitting my nephew/babysat my nephew;helping my dad move"
        "/helped my dad move",
        "my parents' house,my brother's apartment,the community hall,the park,my cousin's farm",
    ),
    _t(
        "pets",
        "dog,cat,puppy,kitten,vet appointment,leash,parrot,hamster,dog food,litter box,"
        "flea treatment,dog walker,fish tank",
        "walking the dog/walked the dog;taking the cat to the vet/took the cat to the vet;"
        "training the puppy/trained the puppy;adopting a kitten/adopted a kitten",
        "the dog park,the vet clinic,the pet store,the shelter,the trail behind our house",
    ),
    _t(
        "health",
        "doctor,knee,back pain,yoga class,gym membership,marathon,physical therapy,allergies,"
        "sleep schedule,diet,dentist,blood test,headache,prescription",
        "going to the gym/went to the gym;running in the morning/ran in the morning;seeing the"
        " dentist/saw the dentist;stretching every day/stretched every day;cutting back on"
        " coffee/cut back on coffee",
        "the clinic,the gym,the pharmacy,the hospital,the physio downtown,the pool",
    ),
    _t(
        "home",
        "kitchen,garden,roof,plumber,couch,landlord,apartment,lease,tomatoes,fence,garage,"
        "renovation,washing machine,heater,bookshelf",
        "painting the bedroom/painted the bedroom;fixing the sink/fixed the sink;planting"
        " tomatoes/planted tomatoes;cleaning the garage/cleaned the garage;moving the couch"
        "/moved the couch",
        "the hardware store,IKEA,the backyard,the basement,the new apartment",
    ),
    _t(
        "hobbies",
        "guitar,painting,photography,knitting,chess,pottery,hiking boots,book club,video game,"
        "jigsaw puzzle,sketchbook,camera,novel",
        "practicing guitar/practiced guitar;going hiking/went hiking;reading a novel/read a"
        " novel;knitting a scarf/knitted a scarf;playing chess online/played chess online",
        "the pottery studio,the library,the climbing gym,the trailhead,the music shop",
    ),
    _t(
        "money",
        "budget,rent,savings,groceries,credit card,car payment,sale,new phone,refund,taxes,"
        "electricity bill,insurance,paycheck",
        "saving for a house/saved for a house;paying off the card/paid off the card;returning"
        " the jacket/returned the jacket;doing my taxes/did my taxes",
        "the bank,the mall,the outlet store,the online shop,the grocery store",
    ),
    _t(
        "shows",
        "movie,series,concert,podcast,album,show,festival,playoffs,game,documentary,musical,"
        "season finale",
        "watching the new series/watched the new series;going to a concert/went to a concert;"
        "listening to a podcast/listened to a podcast;seeing a musical/saw a musical",
        "the cinema,the stadium,the theater,the jazz bar,the summer festival",
    ),
    _t(
        "car",
        "car,tires,mechanic,oil change,bus,commute,bike,parking ticket,license,car seat,"
        "brakes,battery",
        "taking the bus/took the bus;getting the car fixed/got the car fixed;biking to work"
        "/biked to work;renewing my license/renewed my license",
        "the garage on Fifth,the DMV,the car wash,the train station,the highway",
    ),
    _t(
        "school",
        "class,exam,course,homework,teacher,semester,Spanish lessons,degree,essay,lab report,"
        "scholarship,study group",
        "studying for the exam/studied for the exam;taking an online course/took an online"
        " course;writing my essay/wrote my essay;practicing Spanish/practiced Spanish",
        "the library,campus,the night school,the study room,my teacher's office",
    ),
)

_ADJ = (
    "great,awful,stressful,fun,exhausting,amazing,weird,relaxing,expensive,busy,lovely,"
    "frustrating,better than I expected,a bit much,really nice,kind of boring"
).split(",")
_WHEN_PAST = (
    "yesterday,last week,on Saturday,this morning,last night,a few days ago,over the weekend,"
    "last month,on Tuesday,after work"
).split(",")
_WHEN_NEXT = (
    "tomorrow,next week,on Friday,this weekend,next month,in a couple of days,after the holidays,"
    "on Monday"
).split(",")
_WHEN_NEXT_BARE = (
    "Friday,the weekend,next week,Monday,the holidays,the end of the month,my trip,the party"
).split(",")
_PEOPLE = (
    "sister,brother,mom,dad,grandmother,cousin,best friend,neighbor,boss,roommate,husband,"
    "wife,partner,son,daughter,coworker"
).split(",")
_OPENERS = ("", "", "", "So ", "Oh, ", "Honestly, ", "Yeah, ", "Well, ", "Okay so ", "Um, ")

_USER = (
    "I {past} {when_past} and it was {adj}.",
    "We finally sorted out the {noun} {when_past}.",
    "My {person} and I {past} at {place} {when_past}.",
    "I'm thinking about {gerund} {when_next}.",
    "Can you remind me about the {noun} {when_next}?",
    "The {noun} has been {adj} lately, to be honest.",
    "Did I tell you about the {noun} at {place}?",
    "I have to deal with the {noun} before {when_next_bare}.",
    "My {person} keeps asking about the {noun}.",
    "I spent way too long on the {noun} {when_past}. It was {adj}.",
    "I think I'd rather go to {place} than worry about the {noun}.",
    "Remember the {noun} I mentioned? My {person} thinks it was {adj}.",
    "I {past} {when_past}, and then we went to {place}.",
    "I need to call about the {noun}, maybe {when_next}.",
)
_AGENT = (
    "That sounds {adj}. How did the {noun} go?",
    "Got it, I'll remember that you {past} {when_past}.",
    "Last time you mentioned the {noun} at {place}. Is that still the plan?",
    "Would you like a reminder about the {noun} {when_next}?",
    "I'm sorry the {noun} was {adj}. Is your {person} doing okay?",
    "Okay. Should I note that your {person} is {gerund} {when_next}?",
    "How was {place}? You were looking forward to it.",
    "Noted: the {noun}, {when_next}. Anything else?",
    "You said {gerund} was {adj} last time. Still feel that way?",
    "Sure. I'll keep the {noun} on your list.",
)
_QUERY = (
    "what did I say about the {noun}",
    "when is the {noun}",
    "what did my {person} think about the {noun}",
    "did I go to {place}",
    "what happened with the {noun} {when_past}",
    "when did I start {gerund}",
    "{noun} at {place}",
    "what was {adj} about the {noun}",
    "remind me what I planned for {when_next_bare}",
    "how was {gerund} with my {person}",
)


def _fields(template: str) -> tuple[str, ...]:
    return tuple(f for _, f, _, _ in string.Formatter().parse(template) if f)


_PARSED = {t: _fields(t) for t in (*_USER, *_AGENT, *_QUERY)}


class Talk:
    """Turns and queries, every choice drawn from ``rng``."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def topic(self) -> Topic:
        return self._rng.choice(TOPICS)

    def _fill(self, template: str, topic: Topic) -> str:
        r = self._rng
        slots: dict[str, str] = {}
        act: tuple[str, str] | None = None
        for f in _PARSED[template]:
            if f in ("gerund", "past"):
                act = act or r.choice(topic.activities)
                slots[f] = act[0] if f == "gerund" else act[1]
            elif f == "noun":
                slots[f] = r.choice(topic.nouns)
            elif f == "place":
                slots[f] = r.choice(topic.places)
            elif f == "adj":
                slots[f] = r.choice(_ADJ)
            elif f == "when_past":
                slots[f] = r.choice(_WHEN_PAST)
            elif f == "when_next":
                slots[f] = r.choice(_WHEN_NEXT)
            elif f == "when_next_bare":
                slots[f] = r.choice(_WHEN_NEXT_BARE)
            elif f == "person":
                slots[f] = r.choice(_PEOPLE)
        return template.format(**slots)

    def user_turn(self, topic: Topic) -> str:
        """One to three first-person sentences (mean 2.1), now and then opened with a
        filler ("So", "Honestly,")."""
        text = self._fill(self._rng.choice(_USER), topic)
        opener = self._rng.choice(_OPENERS)
        if opener and not text.startswith(("I ", "I'")):
            text = text[0].lower() + text[1:]
        parts = [opener + text]
        more = self._rng.random()
        for _ in range(2 if more < 0.3 else 1 if more < 0.8 else 0):
            parts.append(self._fill(self._rng.choice(_USER), topic))
        return " ".join(parts)

    def agent_turn(self, topic: Topic) -> str:
        """One sentence, or two (two in five turns)."""
        text = self._fill(self._rng.choice(_AGENT), topic)
        if self._rng.random() < 0.4:
            return text + " " + self._fill(self._rng.choice(_AGENT), topic)
        return text

    def query(self) -> str:
        return self._fill(self._rng.choice(_QUERY), self.topic())


def queries(n: int, *, seed: int) -> list[str]:
    """``n`` distinct memory-search queries, the same for the same seed."""
    talk = Talk(random.Random(f"queries-{seed}"))
    out: dict[str, None] = {}
    for _ in range(100 * n + 100):
        if len(out) == n:
            break
        out.setdefault(talk.query(), None)
    if len(out) < n:
        raise ValueError(f"the query grammar has fewer than {n} distinct queries")
    return list(out)
