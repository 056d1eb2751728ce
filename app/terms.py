"""One plain line per technical term, for people who have never trained a network (shown beside the term). Apart
from the catalogue so that Browse's first screen shows them before the engine has loaded."""

TERMS = {
    "unit": "A neuron (unit) is one tiny detector inside the network; it gives a big number when it sees what it "
            "likes.",
    "layer": "A layer is one stage of the network: early layers notice edges and colours, late layers whole "
             "objects; the last layer scores the 1000 ImageNet classes.",
    "prior": "A prior is a picture generator that keeps the search on natural-looking images; without one the "
             "pictures turn into noise.",
    "activation": "Activation is how strongly the neuron responds. Higher means it fires more, not that the "
                  "picture is better or more recognisable.",
}
