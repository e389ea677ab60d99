dnl patchgate in Sendmail, for sendmail.mc: the milter that patchgate milter serves. Include this
dnl file (or copy its two lines) after the OSTYPE and FEATURE lines, then rebuild sendmail.cf.
dnl Without an F= flag Sendmail goes on without a filter it cannot reach, so the mail is accepted
dnl (fail open); F=T would defer it, F=R reject it. Define PATCHGATE_MILTER before the include for
dnl a milter at another address than the default one of patchgate milter.
ifdef(`PATCHGATE_MILTER', `', `define(`PATCHGATE_MILTER', `inet:10041@127.0.0.1')')dnl
INPUT_MAIL_FILTER(`patchgate', `S='PATCHGATE_MILTER`, T=C:10s;S:10s;R:10s;E:30s')dnl
