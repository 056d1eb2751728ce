""""Guess the neuron": which of two photos drives this unit more? One question at a time, with reference pictures
of one condition; a class takes it from one link (`/quiz?room=CODE`) and the teacher's screen shows the tally live."""
import streamlit as st

from app import layout, state
from dgnam_engine import quiz as Q

LAYER = "classifier"
REF_PX, QUERY_PX = 104, 224  # 9 references in a row and both queries with their buttons fit 1280x720
FEW_REF_PX = 160  # a synthetic picture or two: larger, still above the queries in the window
CONDITION_WORDS = {"natural": "Real photos that drive this unit most", "dgnam": "What DGN-AM made for this unit",
                   "pixel": "What the pixel-space baseline made for this unit", "maco": "What MACO made for this unit",
                   "none": "No explanation: go by the photos alone"}

layout.page_header("Guess the neuron", "A unit of EfficientNet-Lite0 is explained by some pictures (or none). "
                   "Which of the two photos below drives it more? Pick one, see the truth, go on. Tells how much "
                   "each kind of picture helps a person predict the unit (Borowski et al. 2021).",
                   help="The query photos are the 241 shipped training photos, as small thumbnails: a folder of "
                        "your own (`quiz auto --images DIR`) gives sharper, better photos. docs/quiz.md says how "
                        "the photos are chosen.")
store = state.store()
answers = Q.AnswersDB(store.root)
room = (st.query_params.get("room") or "").strip().upper()
teacher = st.query_params.get("teacher") == "1"
if room and Q.room_problem(room):
    st.error(Q.room_problem(room))
    st.stop()
session = st.session_state.setdefault("quiz_session", Q.new_session())


def tally_table(t: dict) -> None:
    rows = [{"pictures": Q.CONDITION_NAMES[c], "right": f"{s['correct']} of {s['questions']}",
             "score": f"{s['score']:.0%}", "95% interval": f"{s['ci95'][0]:.0%} to {s['ci95'][1]:.0%}"}
            for c, s in t["conditions"].items()]
    st.markdown(f"**{t['people']} {'person' if t['people'] == 1 else 'people'}, {t['answers']} answers**")
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")


if room and teacher:
    st.subheader(f"Class code {room}")
    st.markdown(f"Students open **`/quiz?room={room}`** on this server (e.g. `{st.context.url.rsplit('/', 1)[0]}"
                f"/quiz?room={room}`). {Q.QUIZ_QUESTIONS} questions each; the tally below updates by itself.")

    @st.fragment(run_every=2)
    def live_tally():
        tally_table(answers.tally(room))
    live_tally()
    st.stop()

if not room and not st.session_state.get("quiz_started"):
    c1, c2 = st.columns(2)
    if c1.button("Start the quiz", type="primary", icon=":material/play_arrow:"):
        st.session_state["quiz_started"] = True
        st.rerun()
    if c2.button("Start a class quiz (a link for your students)", icon=":material/groups:"):
        st.query_params.from_dict({"room": Q.new_room(), "teacher": "1"})
        st.rerun()
    st.stop()

seed = room or session
key = f"quiz_plan_{seed}"
if key not in st.session_state:
    with st.spinner("Choosing the photos..."):
        st.session_state[key] = Q.plan(store, seed)
pool, questions = st.session_state[key]
done = st.session_state.setdefault(f"quiz_done_{seed}", {})  # question number -> the pool index picked
i = st.session_state.setdefault(f"quiz_at_{seed}", 0)

if i >= len(questions):
    right = sum(done[q.number] == q.strong for q in questions)
    st.success(f"Done: {right} of {len(questions)} right.")
    tally_table(answers.tally(room or None) if room else
                {"people": 1, "answers": len(done), "conditions": {
                    c: Q.score(sum(done[q.number] == q.strong for q in questions if q.condition == c),
                               sum(q.condition == c for q in questions))
                    for c in Q.CONDITIONS if any(q.condition == c for q in questions)}})
    st.stop()

q = questions[i]
st.markdown(f"**Question {i + 1} of {len(questions)}** · {CONDITION_WORDS[q.condition]}")
refs = Q.references(store, pool, LAYER, q)
if refs:
    cols = st.columns(len(refs) if len(refs) > 3 else 6)
    for c, pic in zip(cols, refs):
        c.image(pic, width=REF_PX if len(refs) > 3 else FEW_REF_PX)
else:
    st.caption("(no pictures)")

acts = pool.activations(LAYER)[:, q.unit]
picked = done.get(q.number)
left, right_col, rest = st.columns([1, 1, 1.4])
for n, (col, j) in enumerate(zip((left, right_col), q.choices), start=1):
    with col:
        st.image(pool.picture(j), width=QUERY_PX)
        if picked is None:
            if st.button(f"Photo {n} drives it more", key=f"quiz_pick_{q.number}_{n}", shortcut=str(n),
                         width="stretch"):
                answers.record(session, room, q, Q.MODEL, LAYER, pool, j)
                done[q.number] = j
                st.rerun()
        else:
            st.caption(f"activation {acts[j]:.1f}" + (" · the strong one" if j == q.strong else ""))
with rest:
    if picked is not None:
        from dgnam_engine.imagenet import class_names

        (st.success if picked == q.strong else st.error)(
            "Right!" if picked == q.strong else "Not this time.")
        st.markdown(f"The unit is class **{class_names()[q.unit]}** ({q.unit}).")
        if st.button("Next question", type="primary", shortcut="Enter", key=f"quiz_next_{q.number}"):
            st.session_state[f"quiz_at_{seed}"] = i + 1
            st.rerun()
    else:
        st.caption("Keys: 1 or 2.")
