"""The vocabulary of the recall set (bench/recall_set.py): what speakers say and how it is asked later.

Every family states a fact in a speaker's own words and asks about it in other words: a question
shares at most about half of its content words with the turn that answers it (the generator
checks). Decoys share the question's words without answering it. `{x}` is the family's value,
`{S}` the speaker asked about, `{p}` a third person, `{t}` a time phrase, `{when}` a date phrase.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    """A fact about a speaker, stated once (single-hop) or by both speakers (speaker)."""

    name: str
    values: tuple[str, ...]
    say: tuple[str, ...]
    ask: tuple[str, ...]
    decoys: tuple[str, ...]
    prompt: str = ""  # when set, the other speaker asks this first and the fact is the reply


@dataclass(frozen=True)
class Event:
    """Something a speaker does again and again: each time stated with a time phrase `{t}`."""

    name: str
    values: tuple[str, ...]
    say: tuple[str, ...]
    ask: tuple[str, ...]  # end with `{when}`
    decoys: tuple[str, ...]


@dataclass(frozen=True)
class Hop:
    """Two turns in two sessions about a third person `{p}`: the first ties {p} to `{a}`, the
    second tells `{x}`; the question names `{a}` and asks for `{x}`."""

    name: str
    attrs: tuple[str, ...]
    values: tuple[str, ...]
    first: tuple[str, ...]
    second: tuple[str, ...]
    ask: tuple[str, ...]


FACTS = (
    Fact(
        "dog",
        ("beagle", "greyhound", "border collie", "dachshund", "labrador", "corgi"),
        (
            "we finally adopted a {x} puppy from the rescue shelter, he chews every shoe in the flat",
            "brought home a little {x} from the animal shelter on Saturday, meet the newest family member",
        ),
        ("What breed of dog did {S} adopt from the shelter?", "Which kind of pup did {S} bring home?"),
        (
            "the neighbours' dog barked all night again, I barely slept",
            "what kind of breed would be happy in a small apartment, do you think?",
        ),
    ),
    Fact(
        "instrument",
        ("cello", "trumpet", "banjo", "clarinet", "ukulele", "harp"),
        (
            "I bought a secondhand {x} and booked lessons with a teacher from the conservatory",
            "started taking {x} lessons, my fingers hurt but the teacher is patient",
        ),
        ("What instrument is {S} getting lessons on?", "Which musical instrument does {S}'s teacher help with?"),
        (
            "the street musician by the station plays every evening, I love it",
            "learning anything new at our age takes patience",
        ),
    ),
    Fact(
        "allergy",
        ("peanuts", "shellfish", "sesame", "kiwi", "penicillin", "bee stings"),
        (
            "I'm seriously allergic to {x}, I always carry an epipen just in case",
            "found out the hard way that {x} make my throat swell up, the doctor confirmed an allergy",
        ),
        ("Why does {S} keep an epipen around?", "Which substance makes {S}'s throat react?"),
        (
            "the restaurant menu had no information about what was in the food",
            "I should know more about first aid, honestly",
        ),
    ),
    Fact(
        "career",
        ("accounting", "journalism", "banking", "retail", "teaching", "logistics"),
        (
            "after ten years in {x} I retrained as a nurse, best decision I ever made",
            "I quit {x} and went back to school for nursing, night shifts and all",
        ),
        ("What did {S} do for work before becoming a nurse?", "Which field did {S} leave to study nursing?"),
        ("the hospital parking is a nightmare, I circled for twenty minutes", "my previous job had terrible hours too"),
    ),
    Fact(
        "hometown",
        ("Tromsø", "Valparaíso", "Galway", "Ljubljana", "Cusco", "Hobart"),
        ("I grew up in {x}, the winters there shaped me", "my childhood was in {x}, I still miss the harbour"),
        ("In which town did {S} spend the winters growing up?", "Where did {S} spend childhood?"),
        (
            "which town has the best coffee, in your opinion?",
            "originally I wanted to study architecture, funny how things turn out",
        ),
    ),
    Fact(
        "phobia",
        ("spiders", "heights", "deep water", "thunderstorms", "clowns", "elevators"),
        (
            "honestly {x} terrify me, my heart races just thinking about it",
            "I have a real phobia of {x}, always have since I was small",
        ),
        ("What gives {S} a racing heart out of fear?", "What kind of phobia troubles {S}?"),
        ("that horror film was scarier than I expected", "I was afraid the train would be cancelled again"),
    ),
    Fact(
        "collection",
        ("vinyl records", "vintage stamps", "fountain pens", "enamel pins", "old maps", "seashells"),
        (
            "I've been collecting {x} for years, there are almost three hundred now",
            "my shelf of {x} is getting out of hand, I hunt for them at flea markets",
        ),
        ("Which things has {S} been collecting for ages?", "What items does {S} keep on a shelf?"),
        ("the flea market was packed this weekend", "my hobby budget is out of hand this month"),
    ),
    Fact(
        "team",
        ("the Bruins", "Celtic", "the Packers", "Ajax", "the Yankees", "Benfica"),
        (
            "I've supported {x} since I was six, never missed a match on tv",
            "nothing beats watching {x} with my dad, we scream at the screen",
        ),
        ("Which sports club does {S} support?", "What team does {S} scream at?"),
        ("the match last night went into extra time", "my dad wants a new tv for the football"),
    ),
    Fact(
        "language",
        ("Japanese", "Portuguese", "Finnish", "Arabic", "Korean", "Greek"),
        (
            "I practise {x} every morning with an app, the grammar is brutal",
            "signed up for evening {x} classes, hoping to order food without pointing",
        ),
        ("What language is {S} practising?", "Which evening course is {S} taking?"),
        ("studying at night never works for me", "the app keeps sending me notifications to practise"),
    ),
    Fact(
        "garden",
        ("tomatoes", "courgettes", "chillies", "strawberries", "pumpkins", "runner beans"),
        (
            "the allotment is finally producing, we picked a whole basket of {x}",
            "my little plot is overflowing with {x}, I keep giving them away to neighbours",
        ),
        ("What vegetables does {S} grow on the allotment?", "What crop comes out of {S}'s little plot?"),
        ("the garden centre had a sale on hoses", "we grow so fast as kids, don't we"),
    ),
    Fact(
        "car",
        ("Volvo estate", "Mini Cooper", "Skoda Octavia", "Toyota Prius", "Fiat Panda", "Subaru Outback"),
        (
            "traded in the old hatchback for a used {x}, it drives like a dream",
            "finally got the keys to a {x}, secondhand but barely any miles",
        ),
        ("What car does {S} drive now?", "What vehicle did {S} get the keys to?"),
        ("the bus was late again, I might buy a bike", "car insurance went up by a third this year"),
    ),
    Fact(
        "diet",
        ("vegan", "vegetarian", "gluten-free", "pescatarian", "keto", "dairy-free"),
        (
            "I've been {x} for six months now and feel so much lighter",
            "switched to eating {x}, cooking takes longer but I love it",
        ),
        ("Which diet leaves {S} feeling light?", "What diet has {S} switched to?"),
        ("the new cafe has a great lunch menu", "eating late always gives me bad dreams"),
    ),
    Fact(
        "sibling",
        ("twin brother", "older sister", "younger brother", "stepsister", "half-brother", "little sister"),
        (
            "my {x} is visiting next month, we haven't seen each other in two years",
            "spent the whole afternoon on the phone with my {x}, we laughed so much",
        ),
        ("Which family member is visiting {S}?", "Who did {S} chat with on the phone for hours?"),
        ("family dinners get loud at our place", "my phone bill is ridiculous this month"),
    ),
    Fact(
        "commute",
        ("cycles", "takes the ferry", "rollerblades", "takes the tram", "walks an hour", "carpools"),
        (
            "these days I {x} to the office, it's the best part of my morning",
            "I {x} to work now, way better than sitting in traffic",
        ),
        ("What is {S}'s way of travelling to the office?", "How does {S} get to work?"),
        ("traffic on the ring road was awful this morning", "the office moved to the third floor"),
    ),
    Fact(
        "tattoo",
        ("a compass", "a hummingbird", "a lighthouse", "a fern leaf", "a wave", "a fox"),
        (
            "got my first tattoo yesterday, {x} on my forearm, it barely hurt",
            "the ink is done: {x} on my shoulder, I'm obsessed",
        ),
        ("What tattoo design did {S} get?", "What image is now inked on {S}?"),
        ("the design team rejected my slides again", "I burned my arm on the oven, ouch"),
    ),
    Fact(
        "name",
        ("Biscuit", "Pickle", "Mochi", "Waffles", "Noodle", "Pepper"),
        ("we decided on {x}, it just suited her", "{x}! the kids voted and it won by a landslide"),
        ("What did {S} call the new kitten?", "What name did {S} give the cat?"),
        ("the cat from next door sleeps on our car", "calling the bank took an hour on hold"),
        prompt="so did you settle on a name for the kitten yet?",
    ),
    Fact(
        "moving",
        ("Rotterdam", "Lyon", "Busan", "Halifax", "Adelaide", "Krakow"),
        (
            "it's official, I'm relocating to {x} in autumn, the new role starts in October",
            "packing up everything, {x} here I come, the contract is signed",
        ),
        ("Which city is {S} relocating to?", "Where will {S} live after signing the new contract?"),
        ("we moved the couch to the other wall, looks better", "the city council closed the bridge"),
    ),
    Fact(
        "sport",
        ("bouldering", "fencing", "rowing", "judo", "water polo", "archery"),
        (
            "I joined a {x} club, two sessions a week and I'm hooked",
            "tried {x} for the first time, my whole body aches in the best way",
        ),
        ("Which club did {S} sign up to?", "What sport left {S}'s body aching?"),
        ("the sports centre raised its prices", "I started a new book on the train"),
    ),
    Fact(
        "cooking",
        ("sourdough", "ramen broth", "kimchi", "croissants", "tamales", "pierogi"),
        (
            "spent all Sunday making {x} from scratch, my grandmother's recipe",
            "my {x} came out perfect this time, took me five attempts",
        ),
        ("What did {S} cook using an old family recipe?", "What dish has {S} been perfecting?"),
        ("the kitchen tap keeps dripping", "the recipe book I ordered never arrived"),
    ),
    Fact(
        "volunteer",
        ("food bank", "animal sanctuary", "hospice", "literacy charity", "repair cafe", "soup kitchen"),
        (
            "I've started helping out at the {x} on Thursdays, it puts everything in perspective",
            "did my first shift at the {x}, everyone there is so kind",
        ),
        ("Where does {S} help out every Thursday?", "Where did {S} work a first shift as a volunteer?"),
        ("work gave us a volunteer day but nobody used it", "charity shops have the best books"),
    ),
)

EVENTS = (
    Event(
        "hike",
        ("Ridgeback", "Falcon Crest", "Old Mill", "Blue Lakes", "Cedar Gap", "Lantern Hill"),
        ("{t} I did the {x} trail, my legs are jelly", "walked the whole {x} loop {t}, the views were unreal"),
        ("Which trail did {S} hike {when}?", "Where did {S} go walking {when}?"),
        ("my hiking boots finally fell apart", "a trek across Patagonia is on my bucket list"),
    ),
    Event(
        "concert",
        ("a jazz trio", "an orchestra", "a punk band", "a folk singer", "a choir", "a DJ set"),
        ("{t} we saw {x} live at the old theatre, what a night", "went to hear {x} {t}, my ears are still ringing"),
        ("What live music did {S} attend {when}?", "Who did {S} go to hear perform {when}?"),
        ("the theatre is closing for renovation", "I should attend more cultural things"),
    ),
    Event(
        "dinner",
        (
            "a Georgian place",
            "a sushi bar",
            "an Ethiopian restaurant",
            "a tapas bar",
            "a ramen shop",
            "a Lebanese bistro",
        ),
        ("{t} we ate at {x} near the river, the food was incredible", "had dinner at {x} {t}, still dreaming about it"),
        ("Which restaurant served {S} incredible food {when}?", "Where did {S} go for dinner out {when}?"),
        ("eating out is getting so expensive", "I tried to cook something new but burned it"),
    ),
    Event(
        "purchase",
        ("a standing desk", "a kayak", "an espresso machine", "a telescope", "a sewing machine", "a rowing machine"),
        ("{t} I finally ordered {x}, no regrets", "splurged on {x} {t}, it was on sale"),
        ("What did {S} finally buy {when}?", "What did {S} get on sale {when}?"),
        ("my online orders keep going to the wrong address", "I buy too many things I don't need"),
    ),
    Event(
        "film",
        (
            "a Korean thriller",
            "an old western",
            "a nature documentary",
            "a silent comedy",
            "an animated musical",
            "a space opera",
        ),
        (
            "{t} we watched {x} at the cinema, gripping from start to finish",
            "caught {x} {t}, the soundtrack was amazing",
        ),
        ("What did {S} see at the cinema {when}?", "Which film had the soundtrack {S} loved {when}?"),
        ("the cinema popcorn costs a fortune now", "I never have time to watch anything"),
    ),
    Event(
        "visit",
        (
            "grandma",
            "an old school friend",
            "my godmother",
            "a former teacher",
            "my cousin's family",
            "our old neighbours",
        ),
        ("{t} I drove out to see {x}, we talked for hours", "spent the afternoon with {x} {t}, it was lovely"),
        ("Who did {S} go to see {when}?", "Whom did {S} spend the afternoon visiting {when}?"),
        ("visiting hours at the clinic are so short", "the drive out of town took ages"),
    ),
    Event(
        "race",
        ("a 10k", "a half marathon", "a trail ultra", "a charity fun run", "a sprint triathlon", "a 5k park run"),
        ("{t} I ran {x} and beat my personal best", "finished {x} {t}, legs destroyed but happy"),
        ("In which event did {S} set a personal best {when}?", "What race did {S} finish {when}?"),
        ("the race for the council seat is getting nasty", "my running shoes need replacing"),
    ),
    Event(
        "exhibit",
        (
            "a Frida Kahlo retrospective",
            "a dinosaur exhibit",
            "a photography show",
            "a Bauhaus exhibition",
            "a glass-blowing display",
            "a street art festival",
        ),
        ("{t} we went to {x} at the museum, stunning", "saw {x} {t}, I want to go again"),
        ("Which exhibition did {S} check out at the museum {when}?", "What art did {S} go and look at {when}?"),
        ("the museum cafe is the best kept secret in town", "I can't draw to save my life"),
    ),
    Event(
        "repair",
        (
            "the dishwasher",
            "the bike brakes",
            "a leaking tap",
            "the garden fence",
            "the washing machine",
            "the porch light",
        ),
        ("{t} I fixed {x} myself with a video tutorial", "spent {t} repairing {x}, saved a fortune"),
        ("What did {S} fix at home {when}?", "What household thing did {S} repair {when}?"),
        ("the landlord never answers about anything", "I'm useless with tools, honestly"),
    ),
    Event(
        "trip",
        ("the Dolomites", "Lisbon", "the Scottish Highlands", "Kyoto", "Marrakesh", "Iceland"),
        ("{t} we got back from {x}, already missing it", "flew home from {x} {t}, what a week"),
        ("Where did {S} come back from {when}?", "Which destination did {S} fly home from {when}?"),
        ("the airport queues were endless", "I need a holiday so badly"),
    ),
    Event(
        "party",
        (
            "a surprise birthday",
            "a housewarming",
            "a retirement do",
            "an engagement party",
            "a costume party",
            "a garden barbecue",
        ),
        ("{t} we threw {x} for a friend, went on till 2am", "hosted {x} {t}, the flat is a wreck now"),
        ("What celebration did {S} organise for a friend {when}?", "What kind of gathering did {S} host {when}?"),
        ("the party next door kept me awake", "organising anything with my family is chaos"),
    ),
    Event(
        "class",
        (
            "a pottery workshop",
            "a wine tasting course",
            "a first aid course",
            "a salsa class",
            "a bread baking class",
            "a calligraphy workshop",
        ),
        ("{t} I went to {x}, I'm hooked", "tried {x} {t}, the instructor was brilliant"),
        ("What did {S} get hooked on {when}?", "Which class did {S} find the instructor good in {when}?"),
        ("my son's school wants more parent volunteers", "online courses never hold my attention"),
    ),
)

HOPS = (
    Hop(
        "relocated relative",
        ("Porto", "Oslo", "Montreal", "Seville", "Dublin", "Nagoya"),
        ("a baker", "a paramedic", "a park ranger", "a tattoo artist", "an electrician", "a sommelier"),
        (
            "my cousin {p} just moved to {a}, a fresh start after the divorce",
            "{p}, my cousin, packed up and left for {a} last month",
        ),
        ("{p} called, they finally found work as {x}", "good news from {p}: hired as {x}, starting Monday"),
        (
            "What work does {S}'s relative in {a} do now?",
            "What does the relative of {S} who went to {a} do for a living?",
        ),
    ),
    Hop(
        "wedding gift",
        ("a lighthouse", "a vineyard", "a castle", "a botanical garden", "a barn", "a boathouse"),
        ("a set of copper pans", "a hammock", "a framed map", "a pasta maker", "a cheese board", "a weekend voucher"),
        (
            "{p} from my book club is getting married at {a} in the spring",
            "{p} sent the invitation, the ceremony is at {a}",
        ),
        ("ordered {x} for {p}, hope it arrives in time", "wrapped up {x} for {p} this morning"),
        (
            "What present is {S} giving the friend whose wedding is at {a}?",
            "What gift did {S} choose for the couple marrying at {a}?",
        ),
    ),
    Hop(
        "recommended novel",
        ("colleague", "dentist", "barber", "running buddy", "landlord", "yoga teacher"),
        (
            "loved it",
            "found it boring",
            "cried at the ending",
            "couldn't finish it",
            "read it in one night",
            "hated the narrator",
        ),
        ("my {a} {p} told me to read that lighthouse novel", "{p}, my {a}, lent me a novel about sailors"),
        ("finished {p}'s book, honestly I {x}", "about the book from {p}: I {x}"),
        ("How did {S} feel about the story the {a} suggested?", "What did {S} think of the story from the {a}?"),
    ),
    Hop(
        "friend's shop",
        ("a bakery", "a bike shop", "a bookshop", "a cafe", "a deli", "a plant shop"),
        (
            "the cardamom buns",
            "the tandem",
            "the signed first edition",
            "the oat flat white",
            "the truffle salami",
            "the monstera",
        ),
        ("{p}, my old roommate, opened {a} downtown", "big news: {p} has opened {a} on the high street"),
        ("popped in to see {p} and came out with {x}", "{p} talked me into {x}, no regrets"),
        (
            "What did {S} get at the {a} run by a former flatmate?",
            "What did {S} pick up from the {a} that the ex-housemate owns?",
        ),
    ),
)

FILLER = (
    "morning! how was your weekend?",
    "sounds good, let me know how it goes",
    "I was thinking about what you said the other day, it made sense",
    "the weather has been strange lately, sunny then pouring",
    "remind me to call the bank tomorrow",
    "too many meetings on the calendar this week",
    "my laptop keeps freezing during calls",
    "we should plan the summer before prices go up",
    "went for a long walk by the river to clear my head",
    "the new project kicked off and the team seems motivated",
    "I keep losing my keys, I need a tracker",
    "did you see the news about the strike?",
    "ugh, Mondays",
    "haha that's so true",
    "I'm so tired today, slept badly",
    "what are you up to this evening?",
    "tell me more!",
    "that's wonderful, I'm really happy for you",
    "oh no, I'm sorry to hear that",
    "same here, honestly",
    "I'll think about it and get back to you",
    "we should catch up properly soon",
    "the kids are driving me up the wall",
    "work has been intense lately",
    "any plans for the holidays?",
    "I finally cleaned out the fridge",
    "my plants are all dying, no idea why",
    "coffee first, then the world",
    "it's been ages since we talked",
    "I've been binge-listening to a podcast about history",
    "my back hurts from sitting all day",
    "we ordered pizza again, no shame",
    "the internet was down all morning",
    "I love that idea",
    "can't believe it's already this late in the year",
    "how's your mum doing?",
    "I need to renew my passport",
    "the neighbours are renovating, drilling all day",
    "good night, talk soon",
    "that made me laugh out loud",
    "how did the interview go?",
    "I'm proud of you, seriously",
    # everyday things told with a date: a date in a question must not single out the evidence alone
    "yesterday the bus never came, I walked the whole way",
    "this morning the printer jammed three times",
    "two days ago I finally sorted out the attic",
    "last week was exhausting, I barely slept",
    "the dentist fixed my filling yesterday, my jaw is still numb",
    "earlier today I got stuck in a lift for ten minutes",
    "a few days ago my neighbour's dog got out again",
    "this afternoon I did nothing at all and it was great",
    "yesterday I burnt the rice, the whole flat smelled of it",
    "three days ago the boiler broke, cold showers since",
    "last weekend we just stayed in and watched old films",
    "today I finally answered all my emails",
    "a couple of weeks ago I changed my phone plan",
    "this evening I'm cooking for my flatmates",
    "yesterday I spent an hour on hold with the insurance",
    "last week I lost my umbrella on the train",
)

REPLIES = (
    "That's great to hear, {B}!",
    "Wow, really? Tell me everything.",
    "Noted, I'll remember that.",
    "Oh nice, how do you feel about it?",
    "Haha, classic {B}.",
    "Good for you!",
    "No way, {B}, that's amazing.",
    "I had no idea.",
    "Sounds like a lot, but worth it.",
    "Love that for you.",
    "Interesting!",
    "Wait, seriously?",
)

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Time phrases of a statement: days before the session date.
ABSOLUTE = (("today", 0), ("this morning", 0), ("earlier today", 0), ("this afternoon", 0))
RELATIVE = (
    ("yesterday", 1),
    ("the day before yesterday", 2),
    ("three days ago", 3),
    ("last week", 7),
    ("a couple of weeks ago", 14),
)
