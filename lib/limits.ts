/** The longest delay a Node timer takes (2^31 − 1 ms, about 24.8 days): every time option's bound. */
export const MAX_TIMEOUT = 2_147_483_647
