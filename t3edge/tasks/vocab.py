"""Word lists the generators draw from; each word belongs to one split (t3edge.tasks.splits)."""

from __future__ import annotations

GROCERIES = (
    "apples", "bananas", "bread", "milk", "eggs", "butter", "cheese", "rice", "pasta", "flour",
    "sugar", "coffee", "tea", "honey", "yogurt", "oats", "lentils", "beans", "tomatoes", "potatoes",
    "onions", "carrots", "lettuce", "spinach", "peppers", "cucumbers", "lemons", "limes", "oranges",
    "grapes", "pears", "plums", "cherries", "peaches", "melons", "mangoes", "kiwis", "avocados",
    "garlic", "ginger", "basil", "mint", "salt", "olives", "tuna", "salmon", "chicken", "tofu",
    "noodles", "cereal", "jam", "juice", "soap", "candles", "napkins", "batteries", "sponges", "foil",
    "walnuts", "almonds", "raisins", "crackers", "pickles", "mustard", "vinegar", "cocoa", "cream",
    "celery", "radishes", "zucchini", "pumpkin", "broccoli", "cabbage", "corn", "peas", "figs",
    "dates", "prunes", "muffins", "bagels", "waffles", "pretzels", "popcorn", "granola",
)

# Short upper-case words for printed menus and labels (letters OCR reads without confusion).
MENU_ITEMS = (
    "TEA", "CAKE", "SOUP", "PIE", "TOAST", "JUICE", "LATTE", "MOCHA", "WRAP", "TACO", "NACHOS",
    "CREPE", "WAFFLE", "MUFFIN", "DONUT", "PRETZEL", "RAMEN", "CURRY", "PASTA", "PIZZA", "SALAD",
    "BURGER", "FRIES", "NOODLES", "DUMPLING", "BAGEL", "CHAI", "COCOA", "CIDER", "LEMONADE",
    "PANCAKE", "OMELET", "PAELLA", "RISOTTO", "FALAFEL", "HUMMUS", "KEBAB", "TAMALE", "PUDDING",
    "TART", "FLAN", "MACARON", "BROWNIE", "PARFAIT", "SMOOTHIE", "ESPRESSO", "GELATO", "CHURRO",
)

LABEL_WORDS = (
    "TIGER", "MANGO", "RIVER", "PLANET", "CANDLE", "HARBOR", "MEADOW", "LANTERN", "FALCON", "MARBLE",
    "VELVET", "CANYON", "PEPPER", "ANCHOR", "WALNUT", "THUNDER", "CARPET", "DRAGON", "PARADE",
    "TUNNEL", "HAMMER", "MAGNET", "RUBY", "CEDAR", "ORCHID", "JUNGLE", "TEMPLE", "CACTUS", "VALLEY",
    "ROCKET", "NECTAR", "TULIP", "WHALE", "PANDA", "KETTLE", "LADDER", "MIRROR", "PENCIL", "HELMET",
    "TURTLE", "HUNTER", "PALACE", "MUFFIN", "CARAVAN", "WINTER", "SUMMER", "AUTUMN", "DAWN",
    "EMBER", "FOREST", "GARDEN", "HARVEST", "JACKET", "KERNEL", "LEMON", "MELODY", "NUTMEG",
)

CITIES = (
    "Lisbon", "Oslo", "Madrid", "Vienna", "Prague", "Dublin", "Helsinki", "Athens", "Warsaw",
    "Budapest", "Zurich", "Geneva", "Munich", "Hamburg", "Lyon", "Porto", "Seville", "Naples",
    "Milan", "Turin", "Krakow", "Tallinn", "Riga", "Vilnius", "Bergen", "Malmo", "Antwerp", "Ghent",
    "Utrecht", "Rotterdam", "Bristol", "Leeds", "Glasgow", "Cardiff", "Cork", "Valencia", "Bilbao",
    "Marseille", "Nantes", "Bordeaux", "Toulouse", "Florence", "Bologna", "Verona", "Graz", "Salzburg",
    "Ljubljana", "Zagreb", "Sofia", "Bucharest", "Belgrade", "Sarajevo", "Tirana", "Skopje",
)

FIRST_NAMES = (
    "Ana", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Kira",
    "Leo", "Maya", "Nina", "Oscar", "Paula", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor",
    "Wendy", "Yara", "Zoe", "Adam", "Bella", "Carlos", "Dora", "Emil", "Fiona", "Gavin", "Hana",
    "Ivan", "Julia", "Karl", "Lena", "Marco", "Nora", "Omar", "Petra", "Ravi", "Sofia", "Tomas",
)

LAST_NAMES = (
    "Ruiz", "Park", "Novak", "Berg", "Costa", "Meyer", "Silva", "Kowalski", "Jensen", "Moreau",
    "Rossi", "Fischer", "Larsen", "Dubois", "Horvat", "Nagy", "Popescu", "Ivanova", "Schmidt",
    "Petrov", "Santos", "Weber", "Lindqvist", "Okafor", "Tanaka", "Haddad", "Brennan", "Keller",
    "Varga", "Nilsen", "Moretti", "Kovacs", "Almeida", "Becker", "Hansen", "Marin", "Sousa",
)

PROJECTS = (
    "Aurora", "Beacon", "Cascade", "Delta", "Echo", "Falcon", "Granite", "Harbor", "Ivory", "Jasper",
    "Kestrel", "Lumen", "Meridian", "Nimbus", "Onyx", "Pioneer", "Quartz", "Raven", "Summit",
    "Tundra", "Umbra", "Vortex", "Willow", "Zephyr", "Atlas", "Borealis", "Comet", "Drift", "Ember",
    "Fjord", "Glacier", "Horizon", "Iris", "Juniper", "Keystone", "Lotus", "Mosaic", "Nova",
)

SERVICES = (
    "billing", "search", "inventory", "checkout", "payments", "reports", "gateway", "catalog",
    "profiles", "shipping", "alerts", "metrics", "uploads", "sessions", "pricing", "ledger",
    "mailer", "scheduler", "thumbnails", "exports", "imports", "webhooks", "quotes", "reviews",
)

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun")

# Code alphabets without the characters OCR and people confuse (0/O, 1/I/L, 5/S, 8/B, 2/Z, 6/G).
CODE_LETTERS = "ACDEFHJKMNPRTUVWXY"
CODE_DIGITS = "3479"
