/* SPDX-License-Identifier: MIT */
/*
 * This file declares what the transaction-script parser (script.c) needs
 * from the store front: the limits of an open store.
 */
#ifndef USTATE_SCRIPT_I_H
#define USTATE_SCRIPT_I_H

#include "ustate.h"

size_t ustate_max_value_size(const ustate *s);
size_t ustate_max_txn_ops(const ustate *s);

#endif /* USTATE_SCRIPT_I_H */
