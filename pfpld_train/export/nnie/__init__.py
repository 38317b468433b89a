"""HiSilicon NNIE: constraints check (:mod:`.check`), the mapper package (:mod:`.package`) and the int8
simulation (:mod:`.quant`)."""
