"""records/batch.py: the buffers a drain writes into are mapped before the first drain."""
import resource

import numpy as np

from flowcollect.records.batch import empty
from flowcollect.records.layout import FLOW_EXPORT, FLOW_RECORD


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_an_empty_batch_is_zero_and_writing_all_of_it_faults_no_page_in():
    for dtype in (FLOW_RECORD, FLOW_EXPORT):
        # GIVEN a batch of 100,000 rows (2,500 or more pages of 4 KiB)
        batch = empty(100_000, dtype)
        assert batch.dtype == dtype and not batch.view(np.uint8).any()
        # WHEN every byte of it is written, as a drain does
        before = minor_faults()
        batch.view(np.uint8)[:] = 0xFF
        # THEN (nearly) no page is mapped then: they were mapped by empty()
        assert minor_faults() - before < 50
