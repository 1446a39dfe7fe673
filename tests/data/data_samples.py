"""Small inputs shared by the data tests (written for this project)."""

#: Correct English written for these tests, covering what every operator needs to find.
CLEAN_SENTENCES = [
    "She goes to the library every Tuesday after work.",
    "My parents live in a small house near the river.",
    "I can't believe that the summer is almost over.",
    "We have finished the report, and now we can relax.",
    "The children are playing in the garden with their new ball.",
    "He bought an umbrella because the forecast said it would rain.",
    "They're going to visit their grandmother in London next month.",
    "It's important to drink enough water when it is hot.",
    "This book is much better than the film, in my opinion.",
    "I think everyone should learn how to cook a simple meal.",
    "Our teacher gave us three exercises for homework.",
    "The new rules will affect all the students in the school.",
    "If you need help, you can call me at any time.",
    "John's car was parked in front of the station.",
    "We were waiting for the bus when it started to snow.",
    "She has been working at the hospital since January.",
    "The museum is closed on Mondays, so we went to the park instead.",
    "Where did you put the keys?",
    "I don't know whether he will come to the party.",
    "The students discussed the problem with their teacher.",
    "My brother plays football and my sister plays the piano.",
    "These apples are sweeter than those ones.",
    "He wants to become a doctor when he grows up.",
    "We arrived at the airport two hours before the flight.",
    "The weather was beautiful, so we walked along the beach.",
    "I have lived in this city for five years.",
    "Can you tell me where the nearest bank is?",
    "Many people believe that technology makes life easier.",
    "The company hired two new engineers last week.",
    "I usually read a few pages before I go to sleep.",
]

#: A toy M2 file: an ERRANT-typed sentence, a NUCLE-typed one and a correct one.
M2 = """S This are a example of sentence , that I writed yesterday .
A 1 2|||R:VERB:SVA|||is|||REQUIRED|||-NONE-|||0
A 2 3|||R:DET|||an|||REQUIRED|||-NONE-|||0
A 6 7|||U:PUNCT|||-NONE-|||REQUIRED|||-NONE-|||0
A 9 10|||R:VERB:INFL|||wrote|||REQUIRED|||-NONE-|||0

S He do n't like coffee .
A 1 2|||SVA|||does|||REQUIRED|||-NONE-|||0

S Everything is fine here .
A -1 -1|||noop|||-NONE-|||REQUIRED|||-NONE-|||0
"""
